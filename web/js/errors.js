// Errors and code registries of the MOQT codec (draft-ietf-moq-transport-21 §12-§13, §16.11).
//
// Each error says whose fault it is, as in the Python codec (moq/errors.py):
//   NeedMoreData      nobody's: a parser needs more bytes before it can say anything;
//   ProtocolViolation the peer broke the protocol: close the session with `code`, `reason`;
//   EncodeError       our caller asked for something the negotiated draft cannot express;
//   ObjectTooLarge    an object is over a limit of ours: reset that stream (EXCESSIVE_LOAD), keep the session.

/** Base of every error the codec throws on purpose. */
export class MoqError extends Error {
  get name() {
    return this.constructor.name;
  }
}

/** The bytes so far end before the structure does: feed more and try again. */
export class NeedMoreData extends MoqError {}

/** The peer broke the protocol; the session must close with `code` (a SessionErrorCode) and `reason`. */
export class ProtocolViolation extends MoqError {
  /**
   * @param {number} code session termination code (§13.1)
   * @param {string} reason reason phrase for the peer
   */
  constructor(code, reason) {
    super(`${reason} (code 0x${code.toString(16)})`);
    this.code = code;
    this.reason = reason;
  }
}

/** A value that cannot be encoded for the negotiated draft (API misuse, never the peer's fault). */
export class EncodeError extends MoqError {}

/** An object's payload or properties are longer than a parser accepts (a local limit, not a violation). */
export class ObjectTooLarge extends MoqError {
  constructor(what, length, limit) {
    super(`${what} of ${length} bytes is over the limit of ${limit}`);
    this.length = length;
    this.limit = limit;
  }
}

/** Session termination codes (draft-21 §13.1; 0x15 is draft-18 only, 0x1B draft-19+). */
export const SessionErrorCode = Object.freeze({
  NO_ERROR: 0x0,
  INTERNAL_ERROR: 0x1,
  UNAUTHORIZED: 0x2,
  PROTOCOL_VIOLATION: 0x3,
  INVALID_REQUEST_ID: 0x4,
  DUPLICATE_TRACK_ALIAS: 0x5,
  KEY_VALUE_FORMATTING_ERROR: 0x6,
  INVALID_PATH: 0x8,
  MALFORMED_PATH: 0x9,
  GOAWAY_TIMEOUT: 0x10,
  CONTROL_MESSAGE_TIMEOUT: 0x11,
  DATA_STREAM_TIMEOUT: 0x12,
  AUTH_TOKEN_CACHE_OVERFLOW: 0x13,
  DUPLICATE_AUTH_TOKEN_ALIAS: 0x14,
  VERSION_NEGOTIATION_FAILED: 0x15,
  MALFORMED_AUTH_TOKEN: 0x16,
  UNKNOWN_AUTH_TOKEN_ALIAS: 0x17,
  EXPIRED_AUTH_TOKEN: 0x18,
  INVALID_AUTHORITY: 0x19,
  MALFORMED_AUTHORITY: 0x1a,
  TOO_MANY_REQUEST_UPDATES: 0x1b,
});

/** REQUEST_ERROR codes (draft-21 §13.2). Unknown codes must be read as INTERNAL_ERROR, never fatal. */
export const RequestErrorCode = Object.freeze({
  INTERNAL_ERROR: 0x0,
  UNAUTHORIZED: 0x1,
  TIMEOUT: 0x2,
  NOT_SUPPORTED: 0x3,
  MALFORMED_AUTH_TOKEN: 0x4,
  EXPIRED_AUTH_TOKEN: 0x5,
  GOING_AWAY: 0x6,
  EXCESSIVE_LOAD: 0x9,
  DOES_NOT_EXIST: 0x10,
  INVALID_RANGE: 0x11,
  MALFORMED_TRACK: 0x12,
  DUPLICATE_SUBSCRIPTION: 0x19,
  UNINTERESTED: 0x20,
  PREFIX_OVERLAP: 0x30,
  NAMESPACE_TOO_LARGE: 0x31,
  INVALID_JOINING_REQUEST_ID: 0x32,
  UNSUPPORTED_EXTENSION: 0x33,
  REDIRECT: 0x34,
  CONFLICTING_FILTERS: 0x35,
  INVALID_FILTER: 0x36,
});

/** PUBLISH_DONE status codes (draft-21 §13.3; 0x3 SUBSCRIPTION_ENDED is draft-18 only). */
export const PublishDoneCode = Object.freeze({
  INTERNAL_ERROR: 0x0,
  UNAUTHORIZED: 0x1,
  TRACK_ENDED: 0x2,
  SUBSCRIPTION_ENDED: 0x3,
  GOING_AWAY: 0x4,
  TOO_FAR_BEHIND: 0x5,
  EXPIRED: 0x6,
  UPDATE_FAILED: 0x8,
  EXCESSIVE_LOAD: 0x9,
  MALFORMED_TRACK: 0x12,
});

/** RESET_STREAM / STOP_SENDING codes for MOQT streams (draft-21 §13.4). */
export const StreamResetCode = Object.freeze({
  INTERNAL_ERROR: 0x0,
  CANCELLED: 0x1,
  DELIVERY_TIMEOUT: 0x2,
  SESSION_CLOSED: 0x3,
  GOING_AWAY: 0x4,
  TOO_FAR_BEHIND: 0x5,
  UNKNOWN_OBJECT_STATUS: 0x6,
  EXPIRED_AUTH_TOKEN: 0x7,
  EXCESSIVE_LOAD: 0x9,
  MALFORMED_TRACK: 0x12,
});

export const PV = SessionErrorCode.PROTOCOL_VIOLATION;
export const KVFE = SessionErrorCode.KEY_VALUE_FORMATTING_ERROR;
