import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { type AddressInfo, connect, createServer } from 'node:net';
import { type Browser, chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostFixture, mdev, spawnHost } from '../testing/host';
import { parseHttpAddress } from './http';

const { paths, host } = hostFixture();

/** What the test reads of an <img> in the page (the package's TypeScript has no DOM types). */
interface Img {
  complete: boolean;
  naturalWidth: number;
  naturalHeight: number;
  addEventListener(type: 'load', listener: (value: unknown) => void): void;
}

/** Starts a host with its status page on a free loopback port; resolves to it and the port. */
async function hostWithPage() {
  const { control, config } = paths();
  const h = await host(control, config, ['--http', '127.0.0.1:0']);
  const m = /status page on http:\/\/127\.0\.0\.1:(\d+)\//.exec(h.stderr());
  expect(m).not.toBeNull();
  return { h, control, port: Number(m![1]) };
}

/** One raw HTTP exchange: the status line and the body (the connection's whole answer). */
function raw(port: number, text: string | Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let data = '';
    s.on('data', (b) => (data += b));
    s.on('error', reject);
    s.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      resolve({ status: m ? Number(m[1]) : 0, body: data.slice(data.indexOf('\r\n\r\n') + 4) });
    });
    s.end(text);
  });
}

/** A request through node:http (the path sent as given); resolves to the status and body. */
function get(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; type: string | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            type: res.headers['content-type'],
            body: Buffer.concat(parts),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('mdev host --http: the status page in headless Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      // Root (CI) has no user namespace sandbox to give the renderer.
      args: ['--no-sandbox'],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('shows the devices, their bindings and counters, a rate plot and the displays', async () => {
    const { control, port } = await hostWithPage();
    const c = ['--control', control];
    expect(
      (await mdev(['dev', 'add', 'name', 'vdpa0', 'mgmtdev', 'mvnet_loopback', ...c])).code,
    ).toBe(0);
    const uuid = JSON.parse((await mdev(['dev', 'show', '-j', ...c])).out).dev.vdpa0.uuid as string;
    expect((await mdev(['pktgen', '-u', uuid, '--count', '3000', ...c])).code).toBe(0);
    const display = (await mdev(['start', '-p', 'mdpy', '-t', 'mdpy-vga', ...c])).out.trim();

    const page = await browser.newPage({ viewport: { width: 1024, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(String(err)));
    await page.goto(`http://127.0.0.1:${port}/`);
    // Two polls: the second gives the plot its first rate.
    await page.waitForSelector('body[data-polls="2"]');
    const row = page.locator(`#devices tr[data-uuid="${uuid}"]`);
    expect(await row.count()).toBe(2); // one row per queue
    const first = await row.first().textContent();
    for (const want of [
      'vdpa0',
      'mvnet_loopback',
      'mvnet_loopback-virtio',
      'virtio0',
      'virtio_net',
    ])
      expect(first).toContain(want);
    expect(await row.locator('[data-counter="tx_packets"]').textContent()).toBe('3000');
    expect(await row.locator('[data-counter="rx_packets"]').textContent()).toBe('3000');
    expect(await page.locator('#parents').textContent()).toContain('mvnet_loopback-virtio');
    expect(await page.locator('#plot polyline').count()).toBeGreaterThan(0);
    expect(await page.locator('#legend').textContent()).toContain('vdpa0:');
    // The mdpy display, as the picture the host read from it.
    const img = page.locator(`#displays img[data-uuid="${display}"]`);
    await img.evaluate((el) => {
      const i = el as unknown as Img;
      return i.complete && i.naturalWidth
        ? null
        : new Promise((r) => i.addEventListener('load', r));
    });
    expect(
      await img.evaluate((el) => [
        (el as unknown as Img).naturalWidth,
        (el as unknown as Img).naturalHeight,
      ]),
    ).toEqual([640, 480]);
    // A run while the page polls: the plot rises above zero.
    const polls = Number(await page.locator('body').getAttribute('data-polls'));
    const run = mdev(['pktgen', '-u', uuid, '--duration', '3', ...c]);
    await page.waitForSelector(`body[data-polls="${polls + 3}"]`);
    expect((await run).code).toBe(0);
    const peak = await page.evaluate(
      'Math.max(0, ...[...series.values()].flatMap((s) => s.points))',
    );
    expect(peak).toBeGreaterThan(0);
    expect(errors).toEqual([]);

    const shot = PNG.sync.read(await page.screenshot({ type: 'png' }));
    expect([shot.width, shot.height]).toEqual([1024, 900]);
    // Not blank: text, table lines and the grey display make many colours.
    const colours = new Set<number>();
    for (let i = 0; i < shot.data.length; i += 4) colours.add(shot.data.readUInt32BE(i));
    expect(colours.size).toBeGreaterThan(16);
    await page.close();
  });

  it('serves only GET: other methods 405, unknown paths 404, odd requests do not stop it', async () => {
    const { h, port } = await hostWithPage();
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']) {
      const r = await get(port, '/api/status', { method });
      expect({ method, status: r.status }).toEqual({ method, status: 405 });
    }
    for (const path of [
      '/nope',
      '/api',
      '/api/status/',
      '/index.html',
      '/display/../api/status',
      '/display/not-a-uuid.png',
      '/display/83b8f4f2-509f-382f-3c1e-e6bfe0fa1fff.png',
      '/%',
      '/%00',
      '//',
    ]) {
      const r = await get(port, path);
      expect({ path, status: r.status }).toEqual({ path, status: 404 });
    }
    // A request line past the header limit (431), bytes that are not HTTP (400), a request for
    // '*', a Host that is not this server's (a rebound DNS name): answers, not a crash.
    expect(
      (await raw(port, `GET /${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`)).status,
    ).toBe(431);
    expect((await raw(port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x0d, 0x0a]))).status).toBe(
      400,
    );
    const latin1 = `GET /${'\u00e9'.repeat(10)} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;
    expect((await raw(port, Buffer.from(latin1, 'latin1'))).status).toBe(400);
    expect((await raw(port, `GET * HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)).status).toBe(404);
    const rebound = await get(port, '/api/status', { headers: { Host: `evil.example:${port}` } });
    expect(rebound.status).toBe(403);
    // Still serving, the host still running.
    const ok = await get(port, '/api/status');
    expect(ok.status).toBe(200);
    expect(ok.type).toBe('application/json');
    expect(JSON.parse(ok.body.toString()).pid).toBe(h.child.pid);
    expect(h.child.exitCode).toBeNull();
  });

  it('listens on loopback only: any other address is a usage error, exit 2', async () => {
    for (const addr of [
      '0.0.0.0:8080',
      '10.0.0.1:80',
      '[::]:80',
      'localhost:80',
      '127.0.0.1',
      '127.0.0.1:70000',
      '127.0.0.256:80',
      ':80',
    ]) {
      const r = await mdev(['host', '--http', addr]);
      expect({ addr, code: r.code }).toEqual({ addr, code: 2 });
      expect(r.err).toMatch(/--http must be a loopback address and a port/);
    }
    expect(parseHttpAddress('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseHttpAddress('127.1.2.3:0')).toEqual({ host: '127.1.2.3', port: 0 });
    expect(parseHttpAddress('[::1]:80')).toEqual({ host: '::1', port: 80 });
    // A port that is taken: reported, the control socket removed again, exit 1.
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    const busy = paths();
    const h1 = spawnHost([
      '--control',
      busy.control,
      '--config',
      busy.config,
      '--http',
      `127.0.0.1:${port}`,
    ]);
    expect((await h1.exited).code).toBe(1);
    expect(h1.stderr()).toMatch(
      new RegExp(`the status page cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`),
    );
    expect(existsSync(busy.control)).toBe(false);
    taken.close();
    // The host does not start: nothing listens, nothing is made.
    const { control, config } = paths();
    const h = spawnHost(['--control', control, '--config', config, '--http', '0.0.0.0:0']);
    expect((await h.exited).code).toBe(2);
  });
});
