// The console: wires the order book to the feed, the table, the timeline, the chart and the
// forms, and asks for a key when the engine has keys in force.

import { call, describe, feedUrl, forgetKey, keepKey, keysRequired, onUnauthorized, storedKey } from "./api.js";
import { Catalog } from "./catalog.js";
import { PriceChart } from "./chart.js";
import { byId, toast } from "./dom.js";
import { Feed } from "./feed.js";
import { OrderForm } from "./form.js";
import { ListingForm } from "./listing.js";
import { OrderBook, pairOf, summary } from "./orders.js";
import { OrdersTable } from "./table.js";
import { Timeline } from "./timeline.js";

const SNAPSHOT = 50;
const CHARTED_PAIRS = 6;
const TICK_MS = 1000;

const book = new OrderBook(changed);
const table = new OrdersTable(book, { onOpen: (id) => timeline.open(id), onCancel: cancel });
const timeline = new Timeline(book, { onCancel: cancel });
const chart = new PriceChart(book);
const catalog = new Catalog(tokensChanged);
const form = new OrderForm(catalog, { onAccepted: (accepted) => book.put(accepted) });
const listing = new ListingForm(catalog);
const feed = new Feed({ url: feedUrl, onEvent: received, onOpen: readOrders, onState: showState });
const early = new Map();
let started = false;

function changed(id) {
  table.refresh();
  timeline.changed(id);
}

function tokensChanged() {
  form.tokensChanged();
  listing.tokensChanged();
  watchPairs();
}

/** Chart SOL→USDC and the pairs of the newest orders, each quoted at its latest amount. */
/** SOL→USDC and the pairs of the newest orders, each quoted at its newest order's amount. */
function watchPairs() {
  const wanted = new Map([["SOL→USDC", { tokenIn: "SOL", tokenOut: "USDC", amountIn: "1" }]]);
  const ordered = new Set();
  for (const order of book.newestFirst()) {
    const { tokenIn, tokenOut, amountIn } = order.fields;
    const pair = pairOf(order);
    if (!ordered.has(pair) && catalog.listed(tokenIn, tokenOut)) {
      ordered.add(pair);
      wanted.set(pair, { tokenIn, tokenOut, amountIn });
    }
  }
  const charted = [...wanted.entries()].slice(0, CHARTED_PAIRS);
  charted.forEach(([, pair]) => chart.watch(pair.tokenIn, pair.tokenOut, pair.amountIn));
  chart.only(charted.map(([key]) => key));
}

/** A feed event; one of an order not seen yet waits for the order to be read. */
function received(event) {
  if (book.add(event)) return;
  if (!early.has(event.orderId)) {
    early.set(event.orderId, []);
    readOrder(event.orderId);
  }
  early.get(event.orderId).push(event);
}

async function readOrder(id) {
  try {
    book.put(await call("GET", `/api/orders/${id}`));
  } catch (error) {
    toast(describe(error), "error");
  }
  (early.get(id) || []).forEach((event) => book.add(event));
  early.delete(id);
  watchPairs();
}

/** The newest orders with their events: what came before the feed's first event. */
async function readOrders() {
  try {
    const page = await call("GET", `/api/orders?limit=${SNAPSHOT}`);
    page.orders.forEach((order) => book.put(order));
    await Promise.all(page.orders.map((order) => readOrder(order.orderId)));
  } catch (error) {
    toast(describe(error), "error");
  }
}

async function cancel(id) {
  try {
    book.put(await call("DELETE", `/api/orders/${id}`));
    toast(`order ${id.slice(0, 8)} cancelled`, "ok");
  } catch (error) {
    toast(describe(error), "error");
  }
}

function showState(state, message) {
  const pill = byId("feed-state");
  pill.dataset.state = state;
  pill.textContent = message ? `${state}: ${message}` : state;
}

function askForKey(problem = "") {
  byId("key-error").textContent = problem;
  const dialog = byId("key-dialog");
  if (!dialog.open) dialog.showModal();
  byId("key-input").focus();
}

// Nothing works without a key while keys are in force: the dialog comes back if dismissed.
byId("key-dialog").addEventListener("close", () => {
  if (keysRequired() && !storedKey()) askForKey();
});

byId("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = byId("key-input").value.trim();
  if (!key) return;
  keepKey(key);
  book.clear();
  byId("key-input").value = "";
  byId("key-dialog").close();
  start();
});

byId("forget-key").addEventListener("click", () => {
  forgetKey();
  window.location.reload();
});

onUnauthorized(() => {
  feed.stop();
  showState("locked");
  askForKey("The engine refused that key: give another.");
});

async function start() {
  if (keysRequired() && !storedKey()) {
    showState("locked");
    askForKey();
    return;
  }
  byId("forget-key").hidden = !storedKey();
  if (!started) {
    started = true;
    await catalog.start();
  } else {
    await catalog.refresh();
  }
  if (keysRequired() && !storedKey()) return;
  feed.start();
}

setInterval(() => {
  if (book.newestFirst().some((order) => summary(order).cancellable || summary(order).status === "submitted")) {
    table.refresh();
  }
}, TICK_MS);

start();
