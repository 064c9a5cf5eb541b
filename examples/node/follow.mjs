// Follow orders on an orderengine: the three ways into an order's stream, then the feed.
//
//   npm ci --prefix examples/node
//   node examples/node/follow.mjs --url http://127.0.0.1:8080 [--key KEY]
//
// Each way places a market order and prints its stream until the engine closes the socket.
// The feed of all orders (/api/events) is opened first, so it holds every event of those
// three orders; it is printed last, each event with its position, until all three have ended.
// A key (--key, or the environment's ORDERENGINE_KEY) is sent as `Authorization: Bearer`.
import { on, once } from 'node:events';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const ORDER = { type: 'market', tokenIn: 'SOL', tokenOut: 'USDC', amountIn: '0.1' };
const EXECUTE = '/api/orders/execute';
const TERMINAL = new Set(['confirmed', 'failed']);

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    key: { type: 'string', default: process.env.ORDERENGINE_KEY },
  },
});
const base = new URL(values.url);
const headers = values.key ? { Authorization: `Bearer ${values.key}` } : {};

function socketUrl(path) {
  const url = new URL(path, base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url;
}

// Print every message until the engine closes the socket; the order's id.
async function printStream(way, ws) {
  let orderId = '';
  ws.on('message', (data) => {
    const event = JSON.parse(data);
    if (event.error) {
      console.error(`${way}: ${event.error.message}`);
      process.exit(1);
    }
    orderId = event.orderId;
    console.log(way, orderId, event.seq ?? '-', event.status);
  });
  const [code] = await once(ws, 'close');
  console.log(way, orderId, 'closed', code);
  return orderId;
}

// 1. POST the order, then open the `ws` of the answer (it replays, then streams live).
async function postThenOpen() {
  const response = await fetch(new URL(EXECUTE, base), {
    method: 'POST',
    headers: { ...headers, 'Content-Type': 'application/json' },
    body: JSON.stringify(ORDER),
  });
  if (!response.ok) throw new Error(`${response.status} from ${response.url}`);
  const accepted = await response.json();
  return printStream('post-then-open', new WebSocket(socketUrl(accepted.ws), { headers }));
}

// 2. Open the socket and send the order: the accepted order comes back, then events.
async function firstMessage() {
  const ws = new WebSocket(socketUrl(EXECUTE), { headers });
  ws.on('open', () => ws.send(JSON.stringify(ORDER)));
  return printStream('first-message', ws);
}

// 3. POST the order with `Upgrade: websocket`: validated, then the same stream as 2.
// `ws` always builds a GET; its finishRequest hook sends the request, so it may make it a
// POST with the order as its body before the request line is written.
async function postUpgrade() {
  const body = JSON.stringify(ORDER);
  const ws = new WebSocket(socketUrl(EXECUTE), {
    headers: {
      ...headers,
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
    },
    finishRequest(request) {
      request.method = 'POST';
      request.end(body);
    },
  });
  return printStream('post-upgrade', ws);
}

const feed = new WebSocket(socketUrl('/api/events'), { headers });
const feedEvents = on(feed, 'message', { close: ['close'] }); // queued from now on
await once(feed, 'open');
const orders = new Set([await postThenOpen(), await firstMessage(), await postUpgrade()]);
for await (const [data] of feedEvents) {
  const event = JSON.parse(data);
  console.log('feed', event.position, event.orderId, event.seq, event.status);
  if (TERMINAL.has(event.status)) orders.delete(event.orderId);
  if (orders.size === 0) break;
}
feed.close();
if (orders.size > 0) throw new Error('the feed closed before the orders ended');
