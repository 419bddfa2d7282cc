/**
 * The control protocol between `mdev host` and the CLI: one JSON object per line (UTF-8, `\n`),
 * each request answered by one reply in order. Every request is checked before it reaches the
 * device model: a client gets an error reply for anything it can send, and the host goes on.
 *
 *   request  {"version":1,"id":7,"verb":"start","args":{"uuid":"...","parent":"...","type":"..."}}
 *   reply    {"version":1,"id":7,"ok":true,"result":...}
 *            {"version":1,"id":7,"ok":false,"error":{"code":"EEXIST","message":"..."}}
 */

/** The protocol version this host and CLI speak. */
export const PROTOCOL_VERSION = 1;

/** The longest request line taken (without its `\n`); a longer one ends the connection. */
export const MAX_LINE = 64 * 1024;

/** The type of one argument: a string, a boolean, a JSON object, or a list of attributes. */
type ArgType = 'string' | 'boolean' | 'object' | 'attrs' | 'integer' | 'number';

/** Every verb and the arguments it takes (all optional; the device model checks what it needs). */
export const VERBS = {
  ping: {},
  list: { defined: 'boolean', uuid: 'string', parent: 'string' },
  types: { parent: 'string' },
  define: {
    uuid: 'string',
    parent: 'string',
    type: 'string',
    auto: 'boolean',
    attrs: 'attrs',
    json: 'object',
  },
  undefine: { uuid: 'string', parent: 'string' },
  modify: {
    uuid: 'string',
    parent: 'string',
    type: 'string',
    auto: 'boolean',
    json: 'object',
    addattr: 'string',
    value: 'string',
    delattr: 'boolean',
    index: 'integer',
  },
  start: { uuid: 'string', parent: 'string', type: 'string', json: 'object' },
  stop: { uuid: 'string' },
  bind: { uuid: 'string', driver: 'string', socket: 'string' },
  'mgmtdev-show': {},
  'dev-add': { name: 'string', mgmtdev: 'string', mac: 'string', mtu: 'integer' },
  'dev-show': { name: 'string' },
  'dev-config-show': { name: 'string' },
  'dev-del': { name: 'string' },
  'dev-vstats-show': { name: 'string', qidx: 'integer' },
  // Work run on the host's devices: bytes through an mtty port (base64 both ways), a display's
  // picture (a PNG, base64), a pktgen run over a virtio-net device.
  tty: { uuid: 'string', port: 'integer', baud: 'integer', msi: 'boolean', data: 'string' },
  screenshot: { uuid: 'string', mode: 'string', read: 'boolean' },
  pktgen: {
    uuid: 'string',
    count: 'integer',
    duration: 'number',
    size: 'integer',
    burst: 'integer',
    verify: 'boolean',
  },
} as const satisfies Record<string, Record<string, ArgType>>;

export type Verb = keyof typeof VERBS;

/** One device attribute as mdevctl stores it: `[name, value]`, kept in order. */
export type Attr = [string, string];

type ArgValue<T extends ArgType> = T extends 'string'
  ? string
  : T extends 'boolean'
    ? boolean
    : T extends 'integer' | 'number'
      ? number
      : T extends 'attrs'
        ? Attr[]
        : Record<string, unknown>;

/** The checked arguments of `verb`. */
export type Args<V extends Verb> = {
  -readonly [K in keyof (typeof VERBS)[V]]?: (typeof VERBS)[V][K] extends ArgType
    ? ArgValue<(typeof VERBS)[V][K]>
    : never;
};

/** A checked request. */
export interface Request<V extends Verb = Verb> {
  version: number;
  id: number | string | null;
  verb: V;
  args: Args<V>;
}

/** What went wrong, as a reply carries it: an errno-like code and a sentence. */
export interface ReplyError {
  code: string;
  message: string;
}

export type Reply =
  | { version: number; id: number | string | null; ok: true; result: unknown }
  | { version: number; id: number | string | null; ok: false; error: ReplyError };

/** A request the host refuses before it reaches the device model. */
export class ProtocolError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly id: number | string | null = null,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function checkArg(verb: string, name: string, type: ArgType, value: unknown, id: Request['id']) {
  const bad = (what: string) =>
    new ProtocolError('EINVAL', `${verb}: argument '${name}' must be ${what}`, id);
  switch (type) {
    case 'string':
      if (typeof value !== 'string') throw bad('a string');
      return;
    case 'boolean':
      if (typeof value !== 'boolean') throw bad('a boolean');
      return;
    case 'integer':
      if (!Number.isSafeInteger(value) || (value as number) < 0) throw bad('an integer >= 0');
      return;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
        throw bad('a number >= 0');
      return;
    case 'object':
      if (!isObject(value)) throw bad('an object');
      return;
    case 'attrs':
      if (
        !Array.isArray(value) ||
        !value.every(
          (a) =>
            Array.isArray(a) &&
            a.length === 2 &&
            typeof a[0] === 'string' &&
            typeof a[1] === 'string',
        )
      ) {
        throw bad('a list of [name, value] string pairs');
      }
  }
}

/**
 * Parses and checks one request line. ProtocolError (with the request's id when it has a usable
 * one) for malformed JSON, a wrong version, an unknown verb or an argument of the wrong type.
 */
export function parseRequest(line: string): Request {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    throw new ProtocolError('EPROTO', 'malformed JSON');
  }
  if (!isObject(msg)) throw new ProtocolError('EPROTO', 'a request is a JSON object');
  const id =
    typeof msg.id === 'string' || (typeof msg.id === 'number' && Number.isFinite(msg.id))
      ? msg.id
      : null;
  if (msg.version !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      'EPROTONOSUPPORT',
      `protocol version ${JSON.stringify(msg.version) ?? 'missing'}: ` +
        `this host speaks ${PROTOCOL_VERSION}`,
      id,
    );
  }
  if (typeof msg.verb !== 'string' || !Object.hasOwn(VERBS, msg.verb)) {
    throw new ProtocolError(
      'EOPNOTSUPP',
      `unknown verb ${JSON.stringify(msg.verb) ?? '(none)'} ` +
        `(known: ${Object.keys(VERBS).join(', ')})`,
      id,
    );
  }
  const verb = msg.verb as Verb;
  const args = msg.args ?? {};
  if (!isObject(args)) throw new ProtocolError('EINVAL', `${verb}: args must be an object`, id);
  const spec: Record<string, ArgType> = VERBS[verb];
  for (const [name, value] of Object.entries(args)) {
    if (!Object.hasOwn(spec, name)) {
      throw new ProtocolError('EINVAL', `${verb}: unknown argument '${name}'`, id);
    }
    checkArg(verb, name, spec[name]!, value, id);
  }
  return { version: PROTOCOL_VERSION, id, verb, args: args as Args<Verb> };
}

/** The line of a reply (with its `\n`). */
export function replyLine(reply: Reply): string {
  return `${JSON.stringify(reply)}\n`;
}

/**
 * Splits a byte stream into lines of at most `max` bytes. `onLine` gets each complete line;
 * `onOverflow` is called once when a line grows past `max` without its `\n`, after which the
 * splitter takes nothing more (the stream cannot be resynchronised).
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private dead = false;

  constructor(
    private readonly max: number,
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: () => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    while (!this.dead) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      if (this.size + (end - start) > this.max) {
        this.dead = true;
        this.parts = [];
        this.onOverflow();
        return;
      }
      if (nl < 0) {
        if (end > start) {
          this.parts.push(chunk.subarray(start));
          this.size += end - start;
        }
        return;
      }
      this.parts.push(chunk.subarray(start, nl));
      const line = Buffer.concat(this.parts).toString('utf8');
      this.parts = [];
      this.size = 0;
      start = nl + 1;
      this.onLine(line);
    }
  }
}
