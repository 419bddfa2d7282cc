/**
 * Byte copies and compares inside one shared buffer, done by WebAssembly when the buffer is the
 * memory of a shared `WebAssembly.Memory`. Copying a 76-byte frame took 5 to 8 ns as a call into
 * wasm's `memory.copy`, against 15 ns by a JS loop of 32-bit words (a bounds check per access)
 * and 26 ns by `copyWithin` (a call into C++); a loop of 16-byte steps in wasm takes about half
 * the instructions of `memory.copy` (itself a call into C++) at that size, so small copies use
 * one. The compare reads 16 bytes a step. Made by `sharedMemoryBuffer`; guest memory regions and
 * the host's RAM use it.
 */

/** Copy and compare on byte offsets of one buffer. Ranges must lie inside the buffer. */
export interface ByteOps {
  /** Copies `len` bytes from `src` to `dst`, as memmove does (the ranges may overlap). */
  copy(dst: number, src: number, len: number): void;
  /** Whether the `len` bytes at `a` and at `b` are the same. */
  equal(a: number, b: number, len: number): boolean;
}

/** A shared `WebAssembly.Memory` (typed here: Node's types do not describe WebAssembly). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}

/** The part of the WebAssembly API used here. */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: object };
  Memory: new (desc: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}

const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

/** The size of a wasm page: a wasm memory is a whole number of them. */
export const WASM_PAGE = 0x1_0000;
/** The largest wasm32 memory (4 GiB). */
const MAX_PAGES = 0x1_0000;

// The module, in the text format (memory limits are those of the import: any shared memory):
//
//   (module
//     (import "env" "memory" (memory 0 65536 shared))
//     (func (export "copy") (param $dst i32) (param $src i32) (param $len i32)
//       ;; Up to 256 bytes between ranges that do not overlap (|dst - src| >= len, modulo 2^32,
//       ;; which holds exactly for ranges inside a 4 GiB memory): by a loop here, 16 bytes a turn,
//       ;; then 4, then 1. memory.copy is a call into C++ that costs more than such a copy.
//       (if (i32.and (i32.le_u (local.get $len) (i32.const 256))
//             (i32.and (i32.ge_u (i32.sub (local.get $dst) (local.get $src)) (local.get $len))
//                      (i32.ge_u (i32.sub (local.get $src) (local.get $dst)) (local.get $len))))
//         (then
//           (block $b16 (loop $l16
//             (br_if $b16 (i32.lt_u (local.get $len) (i32.const 16)))
//             (v128.store (local.get $dst) (v128.load (local.get $src)))
//             (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
//             (local.set $src (i32.add (local.get $src) (i32.const 16)))
//             (local.set $len (i32.sub (local.get $len) (i32.const 16)))
//             (br $l16)))
//           ;; the same turn with i32.load/i32.store (4 bytes), then i32.load8_u/i32.store8
//           (return)))
//       (memory.copy (local.get $dst) (local.get $src) (local.get $len)))
//     (func (export "equal") (param $a i32) (param $b i32) (param $len i32) (result i32)
//       (block $wide (loop $vectors                     ;; 16 bytes a turn
//         (br_if $wide (i32.lt_u (local.get $len) (i32.const 16)))
//         (if (v128.any_true (v128.xor (v128.load (local.get $a)) (v128.load (local.get $b))))
//           (then (return (i32.const 0))))
//         (local.set $a (i32.add (local.get $a) (i32.const 16)))
//         (local.set $b (i32.add (local.get $b) (i32.const 16)))
//         (local.set $len (i32.sub (local.get $len) (i32.const 16)))
//         (br $vectors)))
//       (block $tail (loop $words                       ;; then 8 bytes a turn
//         (br_if $tail (i32.lt_u (local.get $len) (i32.const 8)))
//         (if (i64.ne (i64.load (local.get $a)) (i64.load (local.get $b)))
//           (then (return (i32.const 0))))
//         (local.set $a (i32.add (local.get $a) (i32.const 8)))
//         (local.set $b (i32.add (local.get $b) (i32.const 8)))
//         (local.set $len (i32.sub (local.get $len) (i32.const 8)))
//         (br $words)))
//       (block $done (loop $bytes                       ;; then the last 0 to 7 bytes
//         (br_if $done (i32.eqz (local.get $len)))
//         (if (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b)))
//           (then (return (i32.const 0))))
//         (local.set $a (i32.add (local.get $a) (i32.const 1)))
//         (local.set $b (i32.add (local.get $b) (i32.const 1)))
//         (local.set $len (i32.sub (local.get $len) (i32.const 1)))
//         (br $bytes)))
//       (i32.const 1)))
//
// Offsets are i32 and wasm reads them unsigned, so a JS number up to 4 GiB passes as it is. The
// 16-byte steps are wasm SIMD (v128), which every maintained Node has.

const I32 = 0x7f;
const I64_NE = 0x52;
const op = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  return: 0x0f,
  get: 0x20,
  set: 0x21,
  i32Load: 0x28,
  i64Load: 0x29,
  i32Load8U: 0x2d,
  i32Store: 0x36,
  i32Store8: 0x3a,
  i32Const: 0x41,
  i32Eqz: 0x45,
  i32Ne: 0x47,
  i32LtU: 0x49,
  i32LeU: 0x4d,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i32And: 0x71,
  void: 0x40,
  // The SIMD prefix, then the instruction (both one byte here).
  simd: 0xfd,
  v128Load: 0x00,
  v128Store: 0x0b,
  v128Xor: 0x51,
  v128AnyTrue: 0x53,
} as const;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const name = (s: string): number[] => [...uleb(s.length), ...[...s].map((c) => c.charCodeAt(0))];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

/**
 * One turn of a compare loop over `step`-byte units; `load` is the unit's load and `ne` what
 * turns two units into an i32 that is not 0 when they differ.
 */
function compareTurn(step: number, load: number[], ne: number[], exitIf: number[]): number[] {
  const [a, b, len] = [0, 1, 2];
  // biome-ignore format: one instruction a line
  return [
    op.block, op.void, op.loop, op.void,
    ...exitIf, op.brIf, 1,
    op.get, a, ...load, op.get, b, ...load, ...ne,
    op.if, op.void, op.i32Const, 0, op.return, op.end,
    op.get, a, op.i32Const, step, op.i32Add, op.set, a,
    op.get, b, op.i32Const, step, op.i32Add, op.set, b,
    op.get, len, op.i32Const, step, op.i32Sub, op.set, len,
    op.br, 0, op.end, op.end,
  ];
}

/** One turn of a copy loop over `step`-byte units; `load` and `store` are the unit's. */
function copyTurn(step: number, load: number[], store: number[], exitIf: number[]): number[] {
  const [dst, src, len] = [0, 1, 2];
  // biome-ignore format: one instruction a line
  return [
    op.block, op.void, op.loop, op.void,
    ...exitIf, op.brIf, 1,
    op.get, dst, op.get, src, ...load, ...store,
    op.get, dst, op.i32Const, step, op.i32Add, op.set, dst,
    op.get, src, op.i32Const, step, op.i32Add, op.set, src,
    op.get, len, op.i32Const, step, op.i32Sub, op.set, len,
    op.br, 0, op.end, op.end,
  ];
}

function moduleBytes(): Uint8Array {
  const params3 = [0x03, I32, I32, I32];
  const types = section(
    1,
    vec([
      [0x60, ...params3, 0x00],
      [0x60, ...params3, 0x01, I32],
    ]),
  );
  // memory import: flags 3 = shared with a maximum; min 0, max 65536 pages.
  const imports = section(
    2,
    vec([[...name('env'), ...name('memory'), 0x02, 0x03, 0x00, ...uleb(MAX_PAGES)]]),
  );
  const funcs = section(3, vec([[0x00], [0x01]]));
  const exports = section(
    7,
    vec([
      [...name('copy'), 0x00, 0x00],
      [...name('equal'), 0x00, 0x01],
    ]),
  );
  const lenBelow = (n: number) => [op.get, 2, op.i32Const, n, op.i32LtU];
  // Memory immediates: alignment hint (log2) and offset.
  const v128Load = [op.simd, op.v128Load, 0, 0];
  // biome-ignore format: one instruction a line
  const copyBody = [
    0x00, // no locals
    op.get, 2, op.i32Const, 0x80, 0x02, op.i32LeU, // len <= 256 (signed LEB128)
    op.get, 0, op.get, 1, op.i32Sub, op.get, 2, op.i32GeU,
    op.get, 1, op.get, 0, op.i32Sub, op.get, 2, op.i32GeU,
    op.i32And, op.i32And,
    op.if, op.void,
    ...copyTurn(16, v128Load, [op.simd, op.v128Store, 0, 0], lenBelow(16)),
    ...copyTurn(4, [op.i32Load, 0, 0], [op.i32Store, 0, 0], lenBelow(4)),
    ...copyTurn(1, [op.i32Load8U, 0, 0], [op.i32Store8, 0, 0], [op.get, 2, op.i32Eqz]),
    op.return, op.end,
    op.get, 0, op.get, 1, op.get, 2, 0xfc, 0x0a, 0x00, 0x00, // memory.copy
    op.end,
  ];
  // biome-ignore format: one instruction a line
  const equalBody = [
    0x00, // no locals
    ...compareTurn(16, v128Load, [op.simd, op.v128Xor, op.simd, op.v128AnyTrue], lenBelow(16)),
    ...compareTurn(8, [op.i64Load, 3, 0], [I64_NE], lenBelow(8)),
    ...compareTurn(1, [op.i32Load8U, 0, 0], [op.i32Ne], [op.get, 2, op.i32Eqz]),
    op.i32Const, 1, op.end,
  ];
  const code = section(
    10,
    vec([
      [...uleb(copyBody.length), ...copyBody],
      [...uleb(equalBody.length), ...equalBody],
    ]),
  );
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  return new Uint8Array([...header, ...types, ...imports, ...funcs, ...exports, ...code]);
}

let compiled: object | null | undefined;

function wasmModule(): object | null {
  if (compiled === undefined) {
    try {
      compiled = wasm ? new wasm.Module(moduleBytes()) : null;
    } catch {
      compiled = null; // no wasm, or no shared memory or bulk memory in this runtime
    }
  }
  return compiled;
}

// The ops of every buffer made by `sharedMemoryBuffer` or adopted with `adoptWasmMemory`, and
// the wasm memory behind each (to hand it to another thread).
const opsByBuffer = new WeakMap<SharedArrayBuffer, ByteOps>();
const memoryByBuffer = new WeakMap<SharedArrayBuffer, WasmMemory>();

/**
 * Registers a shared wasm memory (one made here and posted from another thread, say): its
 * buffer gets byte ops. Returns the buffer, or null when this runtime cannot run the module.
 */
export function adoptWasmMemory(memory: WasmMemory): SharedArrayBuffer | null {
  const buffer = memory.buffer;
  if (!(buffer instanceof SharedArrayBuffer)) return null;
  if (opsByBuffer.has(buffer)) return buffer;
  const mod = wasmModule();
  if (mod === null || !wasm) return null;
  const exports = new wasm.Instance(mod, { env: { memory } }).exports as {
    copy(dst: number, src: number, len: number): void;
    equal(a: number, b: number, len: number): number;
  };
  const { copy, equal } = exports;
  opsByBuffer.set(buffer, { copy, equal: (a, b, len) => equal(a, b, len) === 1 });
  memoryByBuffer.set(buffer, memory);
  return buffer;
}

/**
 * A new zeroed SharedArrayBuffer of `size` bytes. When `size` is a whole number of wasm pages
 * (64 KiB) up to 4 GiB, it is the buffer of a shared `WebAssembly.Memory` of fixed size and has
 * byte ops (`byteOpsOf`); otherwise, without wasm, or when the runtime cannot reserve a wasm
 * memory, a plain one.
 */
export function sharedMemoryBuffer(size: number): SharedArrayBuffer {
  const pages = size / WASM_PAGE;
  if (Number.isInteger(pages) && pages >= 1 && pages <= MAX_PAGES && wasm && wasmModule()) {
    let memory: WasmMemory | null = null;
    try {
      memory = new wasm.Memory({ initial: pages, maximum: pages, shared: true });
    } catch {
      // V8 reserves address space (about 10 GiB) for each wasm memory; where that runs out,
      // a plain buffer does the same job without the byte ops.
    }
    const buffer = memory === null ? null : adoptWasmMemory(memory);
    if (buffer !== null) return buffer;
  }
  return new SharedArrayBuffer(size);
}

/** The byte ops of `buffer`, or null when it is not a wasm memory's. */
export function byteOpsOf(buffer: ArrayBufferLike): ByteOps | null {
  return opsByBuffer.get(buffer as SharedArrayBuffer) ?? null;
}

/** The wasm memory behind `buffer`, if any (what another thread needs to adopt it). */
export function wasmMemoryOf(buffer: ArrayBufferLike): WasmMemory | undefined {
  return memoryByBuffer.get(buffer as SharedArrayBuffer);
}
