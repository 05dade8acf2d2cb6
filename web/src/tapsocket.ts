// A live tap over the dashboard server's WebSocket (/api/tap).

import type { TapEvent } from "./api";

export interface TapHandlers {
  onStart?: () => void;
  onEvent: (event: TapEvent) => void;
  onError: (message: string) => void;
  /** A note about one proxy (it could not be tapped); the tap goes on. */
  onWarning?: (message: string) => void;
  onEnd: () => void;
}

/** A running tap; `stop` ends it (the server closes the stream to the tap controller). */
export interface TapHandle {
  stop(): void;
}

/** Start tapping with `query` (weft/web/queries.py `tap_request` says what it may hold). */
export function openTap(query: Record<string, unknown>, handlers: TapHandlers): TapHandle {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/tap`);
  let ended = false;
  const end = () => {
    if (!ended) {
      ended = true;
      handlers.onEnd();
    }
  };
  socket.addEventListener("open", () => socket.send(JSON.stringify(query)));
  socket.addEventListener("message", (message) => {
    let data: unknown;
    try {
      data = JSON.parse(String(message.data));
    } catch {
      return;
    }
    if (typeof data !== "object" || data === null) return;
    if ("error" in data) handlers.onError(String((data as { error: unknown }).error));
    else if ("warning" in data) handlers.onWarning?.(String((data as { warning: unknown }).warning));
    else if ("started" in data) handlers.onStart?.();
    else if ("end" in data) end();
    else handlers.onEvent(data as TapEvent);
  });
  socket.addEventListener("error", () => handlers.onError("the connection to the dashboard server failed"));
  socket.addEventListener("close", end);
  return {
    stop() {
      if (socket.readyState === WebSocket.OPEN) socket.send("stop");
      socket.close();
      end();
    },
  };
}
