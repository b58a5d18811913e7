/* minist's message format (minist/models/wire.py), in JavaScript:
 *
 *   "MN" | codec id (u8) | C (u8) | h (u16) | w (u16) | fingerprint (4 B) | grid index of β (u8, codec 3) |
 *   rANS payload | CRC-32 of all before it (u32)          — big-endian, as minist's device writes it
 */
(function (root) {
  "use strict";
  const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })();

  function crc32(bytes) {                               // zlib's CRC-32
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  const HEAD = 8;                                       // ">2sBBHH"

  function message(codecId, c, h, w, fields, payload) {
    const body = new Uint8Array(HEAD + fields.length + payload.length);
    const v = new DataView(body.buffer);
    body[0] = 0x4d; body[1] = 0x4e;                      // "MN"
    v.setUint8(2, codecId); v.setUint8(3, c); v.setUint16(4, h); v.setUint16(6, w);
    body.set(fields, HEAD);
    body.set(payload, HEAD + fields.length);
    const out = new Uint8Array(body.length + 4);
    out.set(body);
    new DataView(out.buffer).setUint32(body.length, crc32(body));
    return out;
  }

  /* A message → {codecId, c, h, w, fields, payload}; anything malformed throws with what was wrong. */
  function parse(data, fieldBytes) {
    if (data.length < HEAD + fieldBytes + 4) throw new Error(`message of ${data.length} B is shorter than a header`);
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (data[0] !== 0x4d || data[1] !== 0x4e) throw new Error("not a minist message (no MN magic)");
    const body = data.subarray(0, data.length - 4);
    if (crc32(body) !== v.getUint32(data.length - 4)) throw new Error("CRC-32 mismatch: the message was damaged");
    return {
      codecId: data[2], c: data[3], h: v.getUint16(4), w: v.getUint16(6),
      fields: data.subarray(HEAD, HEAD + fieldBytes), payload: data.subarray(HEAD + fieldBytes, data.length - 4),
    };
  }

  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const fromHex = (hex) => Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16));

  const api = { message, parse, crc32, toHex, fromHex, HEAD };
  root.MinistWire = api;
  if (typeof module !== "undefined" && module.exports) module.exports = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
