// The MOQT codec for browsers, in one import: `import * as moqt from './js/moqt.js'`.
// See web/README.md for the module layout.

export * from './errors.js';
export * from './varint.js';
export * from './version.js';
export * from './primitives.js';
export * from './params.js';
export * from './messages.js';
export * from './data.js';
