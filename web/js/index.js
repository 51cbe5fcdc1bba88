// The listing page (/): the broadcasts the relay has, live. SUBSCRIBE_NAMESPACE with the empty prefix (every
// namespace): NAMESPACE adds a broadcast, NAMESPACE_DONE (its publisher withdrew or left) removes it.
// window.moqStats = {state, draft, relay, broadcasts: [names], lastError}.

import { loadConfig } from './config.js';
import { displayName, watchPath } from './names.js';
import { Session } from './session.js';

const RETRY_MS = [500, 1000, 2000, 5000];

const stats = { state: 'starting', draft: null, relay: null, broadcasts: [], lastError: null };
window.moqStats = stats;

const list = document.getElementById('broadcasts');
const empty = document.getElementById('empty');
/** @type {Map<string, HTMLLIElement>} watch path -> list item */
const items = new Map();

function show() {
  document.getElementById('state').textContent = stats.state;
  document.getElementById('draft').textContent = stats.draft ? `draft-${stats.draft}` : '';
  document.getElementById('relay').textContent = stats.relay ? `relay ${stats.relay}` : '';
  empty.hidden = items.size > 0;
  stats.broadcasts = [...items.values()].map((li) => li.dataset.name);
}

function setState(state) {
  stats.state = state;
  show();
}

function added(namespace) {
  const path = watchPath(namespace);
  if (items.has(path)) return;
  const name = displayName(namespace);
  const li = document.createElement('li');
  li.dataset.name = name;
  const link = document.createElement('a');
  link.href = path;
  link.textContent = name;
  li.append(link);
  const after = [...items.values()].find((other) => other.dataset.name > name);
  list.insertBefore(li, after ?? null);
  items.set(path, li);
  show();
}

function removed(namespace) {
  const path = watchPath(namespace);
  items.get(path)?.remove();
  items.delete(path);
  show();
}

async function main() {
  const config = await loadConfig();
  stats.relay = config.url;
  let attempt = 0;
  for (;;) {
    let session = null;
    try {
      setState('connecting');
      session = await Session.connect(config.url, config);
      stats.draft = session.version;
      await session.subscribeNamespace([], { onNamespace: added, onNamespaceDone: removed });
      setState('listening');
      attempt = 0;
      const { code, reason } = await session.closed;
      stats.lastError = `session closed: ${reason || 'no reason'} (code ${code})`;
    } catch (err) {
      stats.lastError = String(err?.message ?? err);
      console.warn(`listing: ${stats.lastError}`);
      session?.close();
    }
    for (const li of items.values()) li.remove();
    items.clear();
    setState('disconnected, retrying');
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]));
  }
}

main();
