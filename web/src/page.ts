// What the app shell asks of each page.

import type { View } from "./route";

export interface Page {
  /** The page's heading. */
  title: string;
  /** Fetch and render; a rejection is shown by the shell above the last content. */
  refresh(signal: AbortSignal): Promise<void>;
  /** Whether the shell refreshes the page on a timer (tap streams instead). */
  autoRefresh: boolean;
  /** Stop timers, sockets and charts when the user leaves. */
  dispose(): void;
}

export type PageFactory = (view: View, content: HTMLElement) => Page;
