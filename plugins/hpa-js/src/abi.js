// @ts-check
// Integer conversions at the component boundary. componentize-qjs 0.4.5 passes u32 through an i32: a u32 of 2^31 or
// more arrives as a negative number and, returned as a number, saturates at 2^31 - 1; a u64 in the top 2^31 of its
// range arrives negative too. These helpers undo that; they stay correct under a conversion that wraps modulo 2^32
// as ECMAScript's ToUint32 does, should componentize-qjs change to one. host/tests/languages.rs checks them
// (a saturated proposal is u32::MAX, 4294967295).

/** A u32 argument as its value. @param {number} x */
export const fromU32 = (x) => x >>> 0;

/** A u32 result as the bit pattern componentize-qjs lowers correctly. @param {number} x */
export const toU32 = (x) => x | 0;

/** A u64 argument as its value (to the nearest double above 2^53). @param {number} x */
export const fromU64 = (x) => (x < 0 ? x + 18446744073709551616 : x);
