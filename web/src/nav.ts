// In-app navigation for code that is not a link (a click on a graph node).

let go: (url: string) => void = (url) => {
  location.assign(url);
};

/** Let the app shell handle navigation without a reload. */
export function setNavigator(fn: (url: string) => void): void {
  go = fn;
}

/** Open an in-app URL. */
export function navigate(url: string): void {
  go(url);
}

/** Record the current view's URL (so it can be shared) without showing it again. */
export function navigateQuietly(url: string): void {
  history.replaceState(null, "", url);
}

/** Replace the equivalent CLI commands the shell shows (when a form changes them). */
export function showCli(commands: string[]): void {
  window.dispatchEvent(new CustomEvent("weft:cli", { detail: commands }));
}
