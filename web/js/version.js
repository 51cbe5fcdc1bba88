// The drafts this codec speaks (moq/wire/version.py). A version is the draft number: 18, 20, 21 or 22.
// It is a parameter of every codec function, never a subclass. Drafts 20, 21 and 22 share one wire format
// (the "20 family") except the LOCATION_FILTER parameter; draft-18 differs in a few places (DIGEST §17.2).

/** The drafts we offer, best first (the order of WebTransport's `protocols` option). */
export const SUPPORTED_VERSIONS = Object.freeze([22, 21, 20, 18]);

/** The ALPN / WT-Protocol token of a draft: `moqt-NN` (draft-21 §6.1). */
export function alpn(version) {
  return `moqt-${version}`;
}

/** The draft a `moqt-NN` token names, or null for a token we do not speak (e.g. `transport.protocol`). */
export function versionFromAlpn(token) {
  const version = SUPPORTED_VERSIONS.find((v) => alpn(v) === token);
  return version ?? null;
}

/** The wire family: 20 for drafts 20-22, 18 for draft-18. Throws for a draft we do not speak. */
export function family(version) {
  if (version === 20 || version === 21 || version === 22) return 20;
  if (version === 18) return 18;
  throw new RangeError(`unsupported MOQT draft: ${version}`);
}
