// The feed of all orders: one WebSocket to /api/events, resumed after the last position seen.
//
// The first connection starts from now (no `after`), and `onOpen` then reads the orders that
// came before it; events committed meanwhile arrive on both paths, and the order book merges
// them by seq. After a disconnect the socket is opened again with `?after=POSITION`, so no
// event is missed; if none had come yet, there is no position to resume from, and `onOpen`
// reads the orders again. So it does after `RESUMES` failed resumes in a row: the engine
// refuses a position it never gave (its database was replaced, say), and a browser cannot
// tell that refusal from a network that is down.

const RETRY_MS = [500, 1000, 2000, 5000, 10000];
const RESUMES = 3;

export class Feed {
  constructor({ url, onEvent, onOpen, onState }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onOpen = onOpen;
    this.onState = onState;
    this.position = null;
    this.failures = 0;
    this.socket = null;
    this.stopped = false;
  }

  async start() {
    this.stopped = false;
    const resumed = this.position !== null;
    this.onState(resumed ? "resuming" : "connecting");
    let url;
    try {
      url = await this.url(this.position);
    } catch (error) {
      if (error.status !== 401) this.retry();
      return;
    }
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.failures = 0;
      this.onState("live");
      if (!resumed) this.onOpen();
    });
    socket.addEventListener("message", (message) => this.receive(message.data));
    socket.addEventListener("close", () => {
      if (this.socket === socket && !this.stopped) this.retry();
    });
  }

  receive(data) {
    const message = JSON.parse(data);
    if (message.error) {
      this.onState("error", message.error.message);
      return;
    }
    this.position = message.position;
    this.onEvent(message);
  }

  retry() {
    this.onState("reconnecting");
    if (this.failures >= RESUMES) this.position = null;
    const wait = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
    this.failures += 1;
    setTimeout(() => {
      if (!this.stopped) this.start();
    }, wait);
  }

  /** Close the socket for good (a new key is coming, say); `start` opens it again. */
  stop() {
    this.stopped = true;
    this.position = null;
    if (this.socket) this.socket.close(1000);
    this.socket = null;
  }
}
