// The `weft` commands that show what a view shows (pure), as Linkerd's QueryToCliCmd does.

import { shortType } from "./format";
import { DEFAULT_WINDOW, type TapQuery, type View } from "./route";

function windowFlag(window: string): string {
  return window === DEFAULT_WINDOW ? "" : ` -t ${window}`;
}

/** Quote an argument for a POSIX shell when it needs it. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** `weft tap …` for a tap query (empty fields left out). */
export function tapCommand(query: TapQuery): string {
  const args = ["weft", "tap", query.resource || "<resource>"];
  const flag = (name: string, value: string) => {
    if (value) args.push(name, value);
  };
  flag("-n", query.namespace);
  flag("--to", query.toResource);
  if (query.toResource) flag("--to-namespace", query.toNamespace);
  flag("--method", query.method);
  flag("--path", query.path);
  flag("--authority", query.authority);
  flag("--scheme", query.scheme);
  if (query.maxRps && query.maxRps !== "100") flag("--max-rps", query.maxRps);
  if (query.extract) args.push("-o", "json");
  return args.map(shellQuote).join(" ");
}

/** The commands whose output matches the view, one per line. */
export function cliCommands(view: View): string[] {
  switch (view.page) {
    case "overview":
      return [`weft stat ns${windowFlag(view.window)}`];
    case "namespace": {
      const ns = shellQuote(view.namespace);
      return [
        `weft stat deploy -n ${ns}${windowFlag(view.window)}`,
        `weft edges deploy -n ${ns}`,
      ];
    }
    case "workload": {
      const target = `${shortType(view.type)}/${shellQuote(view.name)}`;
      const ns = shellQuote(view.namespace);
      const commands = [`weft stat ${target} -n ${ns}${windowFlag(view.window)}`];
      if (view.type !== "service") {
        commands.push(`weft stat deploy --from ${target} -n ${ns}${windowFlag(view.window)}`);
      }
      commands.push(`weft routes ${target} -n ${ns}${windowFlag(view.window)}`);
      if (view.type !== "service") {
        commands.push(`weft edges ${shortType(view.type)} -n ${ns}`, `weft top ${target} -n ${ns}`);
      }
      return commands;
    }
    case "tap":
      return [tapCommand(view.query)];
    case "controlplane":
      return ["weft check", "weft check --proxy"];
    case "notfound":
      return [];
  }
}
