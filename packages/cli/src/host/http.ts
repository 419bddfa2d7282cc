/**
 * The status page of `mdev host --http 127.0.0.1:PORT`: read-only, on a loopback address only.
 *
 *   GET /                  the page: parents, types, devices with their bindings, per-queue
 *                          counters, a live rate plot, the mdpy/mbochs displays
 *   GET /status.js         the page's script (polls /api/status every second)
 *   GET /api/status        the same facts as JSON
 *   GET /display/UUID.png  what a display mdev shows now
 *
 * Every other path is 404, every other method 405: nothing on this door changes a device.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KernelError, sysfs } from '@mdev/driver-core';
import { type MdevDevice, mdevDevices } from '@mdev/mdev-core';
import { netdevList, VirtNet } from '@mdev/virtio-net';
import { isDisplayType, screenshotOf } from '../commands/screenshot';
import { listTypes } from '../commands/types';
import { UsageError } from '../usage';
import type { DeviceModel, HostLog } from './model';

/** Where the status page listens: a loopback address and a port (0: any free one). */
export interface HttpAddress {
  host: string;
  port: number;
}

/**
 * `--http ADDRESS:PORT` checked: the address must be a loopback one (127.0.0.0/8 or [::1]), as
 * the page shows the host's devices to whoever reaches it and has no login. UsageError else.
 */
export function parseHttpAddress(text: string, option = '--http'): HttpAddress {
  const m = /^(\[::1\]|\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  const octets = m && !m[1]!.startsWith('[') ? m[1]!.split('.').map(Number) : null;
  const loopback =
    m !== null &&
    (m[1] === '[::1]' || (octets !== null && octets[0] === 127 && octets.every((o) => o <= 255)));
  const port = m ? Number(m[2]) : Number.NaN;
  if (!loopback || !(port <= 65535)) {
    throw new UsageError(
      `${option} must be a loopback address and a port, like 127.0.0.1:8080 or [::1]:8080, ` +
        `not "${text}" (the page has no login: it is never served to the network)`,
    );
  }
  return { host: m![1] === '[::1]' ? '::1' : m![1]!, port };
}

/** One queue of a device, as the status page shows it. */
export interface QueueStatus {
  qidx: number;
  type: 'rx' | 'tx';
  counters: Record<string, number>;
}

/** One device, as the status page shows it. */
export interface DeviceStatus {
  uuid: string;
  parent: string;
  type: string;
  /** The name `mdev dev add` gave it, if any. */
  name: string | null;
  defined: boolean;
  auto: boolean;
  /** The driver bound to the mdev (vfio_mdev, mdev_virtio, ...), null when none is. */
  driver: string | null;
  /** The devices made on it (virtio0, ...) and the driver each is bound to. */
  children: { name: string; driver: string | null }[];
  /** Bound to vhost_mdev: the vhost-user socket it is served on, and whether a frontend is there. */
  vhost: { socket: string; connected: boolean } | null;
  /** The net device virtio-net made of it. */
  netdev: string | null;
  queues: QueueStatus[];
  /** Whether it is a display whose picture `/display/UUID.png` serves. */
  display: boolean;
}

/** What `/api/status` answers. */
export interface HostStatus {
  pid: number;
  /** Milliseconds since the epoch, when the counters were read. */
  time: number;
  parents: { name: string; types: { type: string; attrs: Record<string, string> }[] }[];
  devices: DeviceStatus[];
}

/** The counters of `mdev`'s `stats/` files by queue: `rx_*` is queue 0, `tx_*` queue 1. */
function queuesOf(mdev: MdevDevice): QueueStatus[] {
  const dir = `${mdev.path}/stats`;
  if (!sysfs.exists(dir)) return [];
  const rx: Record<string, number> = {};
  const tx: Record<string, number> = {};
  for (const file of sysfs.list(dir)) {
    let value: number;
    try {
      value = Number(sysfs.read(`${dir}/${file}`));
    } catch {
      // A counter that cannot be read now (a VF that does not answer): left out.
      continue;
    }
    if (file.startsWith('rx_')) rx[file] = value;
    else if (file.startsWith('tx_')) tx[file] = value;
  }
  return [
    { qidx: 0, type: 'rx', counters: rx },
    { qidx: 1, type: 'tx', counters: tx },
  ];
}

/** The facts the page shows, read now. */
export function hostStatus(model: DeviceModel): HostStatus {
  const parents = new Map<string, HostStatus['parents'][number]>();
  for (const t of listTypes()) {
    if (!parents.has(t.parent)) parents.set(t.parent, { name: t.parent, types: [] });
    parents.get(t.parent)!.types.push({ type: t.type, attrs: t.attrs });
  }
  const names = new Map(model.vdpa.show({}).map((d) => [d.uuid, d.name]));
  const listed = new Map(model.list({}).map((e) => [e.uuid, e]));
  const devices: DeviceStatus[] = [];
  for (const m of mdevDevices()) {
    if (!m.active) continue;
    const net = netdevList().find((d) => d instanceof VirtNet && d.vdev.parent === m);
    const e = listed.get(m.uuid);
    devices.push({
      uuid: m.uuid,
      parent: m.mdevParent.dev.name,
      type: m.type.name,
      name: names.get(m.uuid) ?? null,
      defined: e?.defined ?? false,
      auto: e?.auto ?? false,
      driver: m.driver?.name ?? null,
      children: m.children().map((d) => ({ name: d.name, driver: d.driver?.name ?? null })),
      vhost: vhostOf(model, m),
      netdev: net?.name ?? null,
      queues: queuesOf(m),
      display: isDisplayType(m.type.name),
    });
  }
  return { pid: process.pid, time: Date.now(), parents: [...parents.values()], devices };
}

function vhostOf(model: DeviceModel, m: MdevDevice): DeviceStatus['vhost'] {
  const backend = model.vhost?.vhostMdevBackendOf(m);
  return backend ? { socket: backend.path, connected: backend.connected } : null;
}

const UUID_PNG = /^\/display\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.png$/;

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; " +
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/** The status page's HTTP server. */
export class StatusServer {
  private readonly server: Server;
  private address: AddressInfo | null = null;

  constructor(
    private readonly model: DeviceModel,
    private readonly log: HostLog,
  ) {
    this.server = createServer(
      { maxHeaderSize: 8 * 1024, requestTimeout: 10_000, headersTimeout: 10_000 },
      (req, res) => this.serve(req, res),
    );
    // A request the parser refuses (a line past maxHeaderSize, bytes that are not HTTP): an
    // answer when the connection can still carry one, then the connection goes.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (socket.writable) {
        const status =
          err.code === 'HPE_HEADER_OVERFLOW'
            ? '431 Request Header Fields Too Large'
            : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      } else {
        socket.destroy();
      }
    });
  }

  /** Listens on `address`; resolves to the port it got (the one asked, or a free one for 0). */
  async listen(address: HttpAddress): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: address.host, port: address.port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.address = this.server.address() as AddressInfo;
    return this.address.port;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * Whether the request names this server in its Host header: a page of another site that a
   * DNS name rebound to 127.0.0.1 sends its own name, and gets nothing.
   */
  private hostAllowed(req: IncomingMessage): boolean {
    const port = this.address?.port;
    const host = req.headers.host;
    return (
      host !== undefined &&
      [
        `127.0.0.1:${port}`,
        `localhost:${port}`,
        `[::1]:${port}`,
        `${this.address?.address}:${port}`,
      ].includes(host.toLowerCase())
    );
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    let answer: Answer;
    try {
      answer = this.route(req);
    } catch (err) {
      this.log(`status page: ${req.method} ${String(req.url).slice(0, 200)}: ${String(err)}`);
      answer = plain(500, 'the host could not answer this');
    }
    res.writeHead(answer.status, {
      ...SECURITY_HEADERS,
      'Content-Type': answer.type,
      'Content-Length': Buffer.byteLength(answer.body),
      ...answer.headers,
    });
    res.end(answer.body);
  }

  /** The answer to one request. */
  private route(req: IncomingMessage): Answer {
    if (req.method !== 'GET')
      return plain(405, 'only GET: this page is read-only', { Allow: 'GET' });
    if (!this.hostAllowed(req)) return plain(403, 'unknown Host');
    // The path without the query; anything that is not one of ours is 404.
    const path = (req.url ?? '').split('?')[0]!;
    if (path === '/') return { status: 200, type: 'text/html; charset=utf-8', body: PAGE };
    if (path === '/status.js')
      return { status: 200, type: 'text/javascript; charset=utf-8', body: SCRIPT };
    if (path === '/api/status') {
      const body = JSON.stringify(hostStatus(this.model));
      return { status: 200, type: 'application/json', body };
    }
    const display = UUID_PNG.exec(path);
    if (!display) return plain(404, 'not found');
    const uuid = display[1]!;
    const dev = mdevDevices().find((m) => m.active && m.uuid === uuid);
    if (!dev || !isDisplayType(dev.type.name)) return plain(404, `no display ${uuid}`);
    try {
      return { status: 200, type: 'image/png', body: screenshotOf(uuid).png };
    } catch (err) {
      // A display that shows nothing yet (no guest set a mode) has no picture.
      if (KernelError.is(err) && err.code === 'EAGAIN') return plain(404, err.message);
      throw err;
    }
  }
}

/** One response: status, content type, body, extra headers. */
interface Answer {
  status: number;
  type: string;
  body: string | Buffer;
  headers?: Record<string, string>;
}

const plain = (status: number, text: string, headers?: Record<string, string>): Answer => ({
  status,
  type: 'text/plain; charset=utf-8',
  body: `${text}\n`,
  headers,
});

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mdev host</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }
  h1 { font-size: 1.4em; margin: 0 0 .5em; }
  h2 { font-size: 1.1em; margin: 1.5em 0 .4em; }
  table { border-collapse: collapse; }
  th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
  th { background: #f0f0f0; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  code { font-size: .95em; }
  #plot { border: 1px solid #ccc; background: #fafafa; }
  .displays img { border: 1px solid #ccc; max-width: 320px; margin: 0 1em 1em 0; }
  .muted { color: #777; }
</style>
</head>
<body>
<h1>mdev host <span id="pid" class="muted"></span></h1>
<p id="state" class="muted">loading&hellip;</p>
<h2>Parents and types</h2>
<table id="parents"><thead><tr><th>parent</th><th>type</th><th>name</th><th>device_api</th>
<th>available</th></tr></thead><tbody></tbody></table>
<h2>Devices</h2>
<table id="devices"><thead><tr><th>uuid</th><th>name</th><th>parent</th><th>type</th>
<th>driver</th><th>bound</th><th>netdev</th><th>queue</th><th>packets</th><th>bytes</th>
<th>other counters</th></tr></thead><tbody></tbody></table>
<h2>Rate (packets/s, all queues)</h2>
<svg id="plot" width="640" height="160" viewBox="0 0 640 160" role="img"
  aria-label="packets per second over the last minute"></svg>
<div id="legend" class="muted"></div>
<h2>Displays</h2>
<div id="displays" class="displays"></div>
<script src="/status.js"></script>
</body>
</html>
`;

// Plain DOM and an SVG polyline: no framework, nothing fetched but this host's own paths.
const SCRIPT = `'use strict';
const HISTORY = 60;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
const series = new Map();
let last = null;
let shown = '';

function cell(row, value, cls) {
  const td = document.createElement('td');
  td.textContent = value === null || value === undefined ? '' : String(value);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function packets(dev) {
  let n = 0;
  for (const q of dev.queues) n += q.counters[q.type + '_packets'] || 0;
  return n;
}

function renderParents(status) {
  const body = document.querySelector('#parents tbody');
  body.replaceChildren();
  for (const p of status.parents) {
    for (const t of p.types) {
      const row = document.createElement('tr');
      cell(row, p.name);
      cell(row, t.type);
      cell(row, t.attrs.name);
      cell(row, t.attrs.device_api);
      cell(row, t.attrs.available_instances, 'num');
      body.appendChild(row);
    }
  }
}

function renderDevices(status) {
  const body = document.querySelector('#devices tbody');
  body.replaceChildren();
  for (const d of status.devices) {
    const queues = d.queues.length ? d.queues : [null];
    queues.forEach((q, i) => {
      const row = document.createElement('tr');
      row.dataset.uuid = d.uuid;
      if (i === 0) {
        const span = String(queues.length);
        for (const v of [d.uuid, d.name, d.parent, d.type, d.driver,
          d.vhost ? d.vhost.socket + (d.vhost.connected ? ' (frontend connected)' : ' (waiting)')
            : d.children.map((c) => c.name + (c.driver ? ' \\u2192 ' + c.driver : '')).join(', '),
          d.netdev]) {
          cell(row, v).rowSpan = Number(span);
        }
      }
      if (q) {
        cell(row, q.qidx + ' ' + q.type);
        cell(row, q.counters[q.type + '_packets'], 'num').dataset.counter = q.type + '_packets';
        cell(row, q.counters[q.type + '_bytes'], 'num').dataset.counter = q.type + '_bytes';
        cell(row, Object.entries(q.counters)
          .filter(([k]) => !k.endsWith('_packets') && !k.endsWith('_bytes'))
          .map(([k, v]) => k + ' ' + v).join(', '));
      } else {
        cell(row, '');
        cell(row, '');
        cell(row, '');
        cell(row, 'no counters');
      }
      body.appendChild(row);
    });
  }
}

function renderPlot(status) {
  const seen = new Set();
  for (const d of status.devices) {
    seen.add(d.uuid);
    const s = series.get(d.uuid) || { label: d.name || d.uuid.slice(0, 8), points: [] };
    series.set(d.uuid, s);
    const prev = last && last.devices.find((x) => x.uuid === d.uuid);
    const dt = last ? (status.time - last.time) / 1000 : 0;
    if (prev && dt > 0) s.points.push(Math.max(0, (packets(d) - packets(prev)) / dt));
    if (s.points.length > HISTORY) s.points.shift();
  }
  for (const k of [...series.keys()]) if (!seen.has(k)) series.delete(k);
  const svg = document.getElementById('plot');
  const W = 640, H = 160, PAD = 4;
  let max = 1;
  for (const s of series.values()) for (const p of s.points) max = Math.max(max, p);
  svg.replaceChildren();
  const legend = [];
  let i = 0;
  for (const s of series.values()) {
    const color = COLORS[i++ % COLORS.length];
    const pts = s.points.map((p, j) => {
      const x = PAD + (j * (W - 2 * PAD)) / (HISTORY - 1);
      const y = H - PAD - (p / max) * (H - 2 * PAD);
      return x.toFixed(1) + ',' + y.toFixed(1);
    });
    if (pts.length) {
      const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
      line.setAttribute('points', pts.join(' '));
      line.setAttribute('fill', 'none');
      line.setAttribute('stroke', color);
      line.setAttribute('stroke-width', '2');
      svg.appendChild(line);
    }
    const now = s.points.length ? Math.round(s.points[s.points.length - 1]) : 0;
    legend.push(s.label + ': ' + now + ' pkt/s');
  }
  document.getElementById('legend').textContent =
    legend.join(' \\u00b7 ') + (legend.length ? ' (scale: ' + Math.round(max) + ' pkt/s)' : '');
}

function renderDisplays(status, refresh) {
  const box = document.getElementById('displays');
  const list = status.devices.filter((d) => d.display).map((d) => d.uuid);
  if (list.join() !== shown) {
    shown = list.join();
    box.replaceChildren();
    for (const uuid of list) {
      const img = document.createElement('img');
      img.alt = 'display ' + uuid;
      img.dataset.uuid = uuid;
      box.appendChild(img);
    }
    refresh = true;
  }
  if (!list.length) box.textContent = 'no mdpy or mbochs device';
  if (refresh) {
    for (const img of box.querySelectorAll('img')) {
      img.src = '/display/' + img.dataset.uuid + '.png?t=' + status.time;
    }
  }
}

let polls = 0;
async function poll() {
  try {
    const r = await fetch('/api/status', { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const status = await r.json();
    document.getElementById('pid').textContent = '(pid ' + status.pid + ')';
    renderParents(status);
    renderDevices(status);
    renderPlot(status);
    renderDisplays(status, polls % 5 === 0);
    last = status;
    polls++;
    document.getElementById('state').textContent =
      status.devices.length + ' devices, updated ' + new Date(status.time).toLocaleTimeString();
    document.body.dataset.polls = String(polls);
  } catch (err) {
    document.getElementById('state').textContent = 'the host does not answer: ' + err.message;
  }
}
poll();
setInterval(poll, 1000);
`;
