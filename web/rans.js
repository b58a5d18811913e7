/* CompressAI's rANS coder (encode_with_indexes / decode_with_indexes of compressai 1.2's rans_interface.cpp,
 * built on Fabian Giesen's public-domain rans64.h), byte for byte, in JavaScript.
 *
 * A 64-bit state (a BigInt here), 32-bit output words (little-endian), 16-bit CDF precision, and values outside a
 * channel's table sent as 4-bit "bypass" chunks. It mirrors minist-device's NumPy port (device/minist_device/
 * rans.py); the page's self-test compares its messages with minist's Python device, byte for byte.
 *
 * Tables: `cdfs` is one flat Int32Array holding, for every channel c, `stride` entries from c * stride (CompressAI's
 * quantised CDF, padded); `lengths[c]` and `offsets[c]` as CompressAI keeps them.
 */
(function (root) {
  "use strict";
  const PRECISION = 16n;
  const BYPASS_BITS = 4;
  const MAX_BYPASS = (1 << BYPASS_BITS) - 1;
  const RANS_L = 1n << 31n;
  const MASK32 = 0xffffffffn;
  const MASK_P = (1n << PRECISION) - 1n;
  const BOUND = (RANS_L >> PRECISION) << 32n;           // x_max = BOUND · freq

  /* Symbols (Int32Array) with a table per symbol (channel index) → the coded units (start, freq, bypass),
   * in coding order, as CompressAI's `_syms`. */
  function units(symbols, channel, cdfs, stride, lengths, offsets) {
    const out = [];
    for (let i = 0; i < symbols.length; i++) {
      const c = channel[i];
      const maxValue = lengths[c] - 2;
      let value = symbols[i] - offsets[c];
      let raw = 0;
      const escape = value < 0 || value >= maxValue;
      if (value < 0) raw = -2 * value - 1;
      else if (value >= maxValue) raw = 2 * (value - maxValue);
      if (escape) value = maxValue;
      const start = cdfs[c * stride + value];
      out.push([start, cdfs[c * stride + value + 1] - start, false]);
      if (!escape) continue;
      raw = raw >>> 0;                                   // CompressAI keeps it in a uint32
      let n = 0;
      while (n < 8 && (n * BYPASS_BITS >= 32 ? 0 : raw >>> (n * BYPASS_BITS)) !== 0) n++;
      let val = n;
      while (val >= MAX_BYPASS) { out.push([MAX_BYPASS, MAX_BYPASS + 1, true]); val -= MAX_BYPASS; }
      out.push([val, val + 1, true]);
      for (let j = 0; j < n; j++) {
        const chunk = (raw >>> (j * BYPASS_BITS)) & MAX_BYPASS;
        out.push([chunk, chunk + 1, true]);
      }
    }
    return out;
  }

  /* Push the units into the state backwards (rANS is last-in, first-out) → the payload bytes. */
  function encodeUnits(us) {
    let x = RANS_L;
    const words = [];
    const bypassBound = BOUND << BigInt(16 - BYPASS_BITS);  // x_max of a bypass chunk, (L >> 4) << 32
    for (let k = us.length - 1; k >= 0; k--) {
      const [start, freq, bypass] = us[k];
      if (bypass) {
        if (x >= bypassBound) { words.push(Number(x & MASK32)); x >>= 32n; }
        x = (x << BigInt(BYPASS_BITS)) | BigInt(start);
      } else {
        const f = BigInt(freq);
        if (x >= BOUND * f) { words.push(Number(x & MASK32)); x >>= 32n; }
        x = ((x / f) << PRECISION) + (x % f) + BigInt(start);
      }
    }
    words.push(Number(x >> 32n));                        // the flush: the state's low word first in memory
    words.push(Number(x & MASK32));
    words.reverse();
    const out = new Uint8Array(4 * words.length);
    const view = new DataView(out.buffer);
    words.forEach((w, i) => view.setUint32(4 * i, w, true));
    return out;
  }

  function encode(symbols, channel, cdfs, stride, lengths, offsets) {
    return encodeUnits(units(symbols, channel, cdfs, stride, lengths, offsets));
  }

  /* The payload → `count` symbols, each decoded with its channel's table (CompressAI's decode_with_indexes).
   * A payload that runs out, or decodes to nonsense, throws. */
  function decode(payload, count, channel, cdfs, stride, lengths, offsets) {
    if (payload.length % 4 !== 0 || payload.length < 8) throw new Error("rANS payload is not whole 32-bit words");
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const nWords = payload.length / 4;
    let ptr = 0;
    const next = () => {
      if (ptr >= nWords) throw new Error("rANS payload ends too early");
      return BigInt(view.getUint32(4 * ptr++, true));
    };
    let x = next();
    x |= next() << 32n;
    const renorm = () => { if (x < RANS_L) x = (x << 32n) | next(); };
    const getBits = () => {
      const v = Number(x & BigInt(MAX_BYPASS));
      x >>= BigInt(BYPASS_BITS);
      renorm();
      return v;
    };
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      const c = channel[i];
      const base = c * stride;
      const len = lengths[c];
      const maxValue = len - 2;
      const cum = Number(x & MASK_P);
      let s = 0;
      while (s + 1 < len && cdfs[base + s + 1] <= cum) s++;   // the last CDF entry ≤ cum (find_if(v > cum) − 1)
      const start = cdfs[base + s];
      const freq = cdfs[base + s + 1] - start;
      x = BigInt(freq) * (x >> PRECISION) + (x & MASK_P) - BigInt(start);
      renorm();
      let value = s;
      if (value === maxValue) {
        let val = getBits();
        let n = val;
        while (val === MAX_BYPASS) { val = getBits(); n += val; }
        let raw = 0;
        for (let j = 0; j < n; j++) raw |= getBits() << (j * BYPASS_BITS);
        value = raw >> 1;
        if (raw & 1) value = -value - 1; else value += maxValue;
      }
      out[i] = value + offsets[c];
    }
    return out;
  }

  /* Bits each symbol costs under its table (−log2 of its probability; bypass chunks count 4 bits each). */
  function bits(symbols, channel, cdfs, stride, lengths, offsets) {
    const out = new Float32Array(symbols.length);
    const scale = 1 << Number(PRECISION);
    for (let i = 0; i < symbols.length; i++) {
      const c = channel[i];
      const maxValue = lengths[c] - 2;
      let v = symbols[i] - offsets[c];
      let extra = 0;
      if (v < 0 || v >= maxValue) {
        const raw = v < 0 ? -2 * v - 1 : 2 * (v - maxValue);
        let n = 0;
        while (n < 8 && raw >>> (n * BYPASS_BITS) !== 0) n++;
        extra = BYPASS_BITS * (n + 1 + Math.floor(n / MAX_BYPASS));
        v = maxValue;
      }
      const freq = cdfs[c * stride + v + 1] - cdfs[c * stride + v];
      out[i] = -Math.log2(freq / scale) + extra;
    }
    return out;
  }

  const api = { encode, decode, bits, units, PRECISION: Number(PRECISION) };
  root.MinistRans = api;
  if (typeof module !== "undefined" && module.exports) module.exports = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
