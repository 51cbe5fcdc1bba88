// Broadcast names in page addresses: /watch/NAME, NAME = the namespace's fields between '/', each field
// percent-encoded byte by byte (every byte but RFC 3986's unreserved ones, '/' included). relay/web.py's
// `watch_path` writes the same form, so a link made on either side opens the same broadcast. A call's room is
// named the same way: /call/ROOM (`callPath`, relay/web.py's `call_path`).

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/** A field as bytes (strings are UTF-8). */
function bytesOf(field) {
  return typeof field === 'string' ? encoder.encode(field) : field;
}

/** One namespace field, percent-encoded. */
export function encodeField(field) {
  let out = '';
  for (const byte of bytesOf(field)) {
    const c = String.fromCharCode(byte);
    out += byte < 0x80 && UNRESERVED.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The bytes of a percent-encoded field (a stray '%' stays a '%'). */
export function decodeField(text) {
  const out = [];
  let i = 0;
  while (i < text.length) {
    const hex = text.slice(i + 1, i + 3);
    if (text[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 3;
    } else {
      const char = String.fromCodePoint(text.codePointAt(i));
      out.push(...encoder.encode(char));
      i += char.length;
    }
  }
  return new Uint8Array(out);
}

/** The player's address of a namespace: `/watch/live/demo`. */
export function watchPath(namespace) {
  return `/watch/${namespace.map(encodeField).join('/')}`;
}

/** A call room's address: `/call/team` (the room is a namespace prefix: its participants publish under it). */
export function callPath(room) {
  return `/call/${room.map(encodeField).join('/')}`;
}

/**
 * The namespace (fields as Uint8Array) named by a /watch/NAME path (or, with `prefix` '/call/', the room of a
 * /call/ROOM path), or null when there is no name.
 */
export function namespaceFromPath(pathname, prefix = '/watch/') {
  if (!pathname.startsWith(prefix)) return null;
  const fields = pathname.slice(prefix.length).split('/').filter((f) => f.length > 0);
  return fields.length ? fields.map(decodeField) : null;
}

/** A namespace for people: its fields as UTF-8 text, '/' between them. */
export function displayName(namespace) {
  return namespace.map((f) => decoder.decode(bytesOf(f))).join('/');
}

/** `bytes` random bytes as hex: the tail of a guest's name (`guest-xxxxxxxx`). */
export function randomHex(bytes) {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
}
