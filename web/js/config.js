// Where the page finds the relay: `/config.json`, served by the relay's web server (relay/web.py) with its
// WebTransport URL and, for a development certificate, the certificate's sha-256 (for serverCertificateHashes).
// The page's query may override them: ?relay=https://host:port/&fingerprint=<hex>&drafts=22,18.

import { SUPPORTED_VERSIONS } from './moqt.js';

/**
 * @typedef {{url: string, fingerprint: string | null, drafts: number[]}} RelayConfig
 */

/** The relay this page talks to. @returns {Promise<RelayConfig>} */
export async function loadConfig(query = new URLSearchParams(location.search)) {
  let served = {};
  try {
    const response = await fetch('/config.json', { cache: 'no-store' });
    if (response.ok) served = await response.json();
  } catch {
    // no config.json (a page served by something else): the query must say where the relay is
  }
  const url = query.get('relay') ?? served.url ?? `https://${location.hostname}:4443/`;
  const fingerprint = query.get('fingerprint') ?? served.fingerprint ?? null;
  let drafts = [...SUPPORTED_VERSIONS];
  if (query.get('drafts')) {
    const asked = query.get('drafts').split(',').map(Number);
    drafts = SUPPORTED_VERSIONS.filter((v) => asked.includes(v));
  }
  return { url, fingerprint, drafts };
}

/** A number from the page's query, or `fallback`. */
export function queryNumber(query, name, fallback) {
  const value = query.get(name);
  if (value === null || value === '') return fallback;
  const number = Number(value);
  return Number.isFinite(number) ? number : fallback;
}
