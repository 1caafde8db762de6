// A dRAID/CRUSH-style aperiodic layout in JavaScript: every stripe uses one
// row on every leg, with its data, parity and spare columns permuted by a
// seeded hash of the stripe number, so a rebuild reads from every leg at
// once. Maps identically to the built-in Rust draid (tests/polyglot.rs
// proves it over random geometries).
//
// Arguments: p=N parities (1 to 3, default 2), s=N spares (default 1),
// seed=N (default 0); the data count is legs - p - s. Parity m weighs data
// chunk k by g^(m k) in GF(2^8) (polynomial 0x11d, generator 2).
//
// Built by componentize-qjs (QuickJS) with WASI stubbed out, so the
// component imports nothing (see build.sh and docs/tutorials/javascript.md).
// componentize-qjs passes u64 as a Number (exact below 2^53, which chunk
// numbers stay under); the 64-bit hash itself is computed with BigInt.

const DATA = 0, PARITY = 2, SPARE = 3;
const MASK64 = (1n << 64n) - 1n;

// The instance's configuration; the host makes one instance per array.
let legs = 0, data = 0, parities = 0, seed = 0n;
// Coefficient words of each parity, computed once at configure.
let parityWords = [];

// SplitMix64 (Steele, Lea, Flood), on 64-bit BigInts.
function splitmix64(x) {
  x = (x + 0x9e3779b97f4a7c15n) & MASK64;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return x ^ (x >> 31n);
}

function gfExp2(e) {
  let v = 1;
  for (let i = 0; i < e % 255; i++) {
    v <<= 1;
    if (v & 0x100) v ^= 0x11d;
  }
  return v;
}

function words(args) {
  return args.split(/[\s,]+/).filter((w) => w.length > 0);
}

// A numeric key=value, or the default; an error names the key.
function number(args, key, fallback) {
  const word = words(args).find((w) => w.startsWith(key + "="));
  if (word === undefined) return fallback;
  const text = word.slice(key.length + 1);
  if (!/^[0-9]+$/.test(text) || BigInt(text) > MASK64) throw `argument ${key}=${text}: not a whole number`;
  return BigInt(text);
}

// Leg of each column in stripe s: a Fisher-Yates shuffle.
function permutation(s) {
  const order = [];
  for (let i = 0; i < legs; i++) order.push(i);
  let state = splitmix64(seed ^ splitmix64(BigInt(s)));
  for (let i = legs - 1; i >= 1; i--) {
    state = splitmix64(state);
    const j = Number(state % BigInt(i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

export const algorithm = {
  name() {
    return "draid";
  },

  configure(geometry) {
    for (const w of words(geometry.args)) {
      const key = w.split("=")[0];
      if (!w.includes("=") || !["p", "s", "seed"].includes(key)) throw `unknown argument '${w}' (expected one of: p=N, s=N, seed=N)`;
    }
    const p = number(geometry.args, "p", 2n);
    const spares = number(geometry.args, "s", 1n);
    const seedArg = number(geometry.args, "seed", 0n);
    if (p < 1n || p > 3n) throw `draid supports p=1 to p=3 parities, got p=${p}`;
    const n = BigInt(geometry.legs);
    if (n < p + spares + 1n) throw `draid with p=${p} s=${spares} needs at least ${p + spares + 1n} legs, got ${n}`;
    const d = Number(n - p - spares);
    if (d > 255) throw `draid supports at most 255 data chunks per stripe, got ${d}`;
    legs = geometry.legs;
    data = d;
    parities = Number(p);
    seed = seedArg;
    parityWords = [];
    for (let m = 0; m < parities; m++) {
      const coefficientWords = [];
      for (let w = 0; w < Math.ceil(data / 4); w++) {
        // Four coefficients per word, low byte first; >>> 0 keeps it unsigned.
        let word = 0;
        for (let b = 0; b < 4 && w * 4 + b < data; b++) word |= gfExp2(m * (w * 4 + b)) << (8 * b);
        coefficientWords.push(word >>> 0);
      }
      parityWords.push(coefficientWords);
    }
    return {
      dataChunks: data,
      replicaChunks: 0,
      parityChunks: parities,
      spareChunks: Number(spares),
      stripes: Math.min(...geometry.legChunks),
      period: 0,
      periodAdvance: 0,
      faultTolerance: parities,
    };
  },

  mapStripes(first, count) {
    const out = [];
    for (let s = first; s < first + count; s++) {
      const column = permutation(s);
      let c = 0;
      for (let k = 0; k < data; k++) out.push(column[c++], s, DATA | (k << 8));
      for (let m = 0; m < parities; m++) {
        out.push(column[c++], s, PARITY | (m << 8));
        for (const word of parityWords[m]) out.push(word);
      }
      for (let e = 0; c < legs; e++) out.push(column[c++], s, SPARE | (e << 8));
    }
    return out;
  },
};
