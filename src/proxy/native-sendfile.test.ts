import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { open, type FileHandle } from 'node:fs/promises';
import http from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nativeSendfileAvailable, trySendfile } from './native-sendfile.js';

/** A server that answers `/?off=O&len=L` with that slice of one file, through trySendfile. */
describe('native sendfile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sendfile-'));
  const file = join(dir, 'blob');
  const data = randomBytes(24 * 1024 * 1024 + 123);
  let server: http.Server;
  let base: string;
  const outcomes = new Map<string, { ok: boolean; sent: number }>();
  const outcome = async (id: string): Promise<{ ok: boolean; sent: number } | undefined> => {
    const deadline = Date.now() + 10_000;
    while (!outcomes.has(id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return outcomes.get(id);
  };
  let handles: FileHandle[] = [];

  before(async () => {
    writeFileSync(file, data);
    server = http.createServer(async (req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      const off = Number(u.searchParams.get('off') ?? 0);
      const len = Number(u.searchParams.get('len') ?? data.length);
      const fh = await open(file, 'r');
      handles.push(fh);
      const p = trySendfile(res, 200, { 'content-type': 'application/octet-stream', 'content-length': String(len) }, fh.fd, off, len, Number(u.searchParams.get('stall') ?? 60_000));
      if (!p) {
        res.writeHead(500).end('native path not taken');
        return;
      }
      p.then(
        (sent) => {
          outcomes.set(u.searchParams.get('id') ?? '', { ok: true, sent });
          res.end();
        },
        (err: Error & { sent?: number }) => {
          outcomes.set(u.searchParams.get('id') ?? '', { ok: false, sent: err.sent ?? 0 });
          res.destroy();
        },
      ).finally(() => void fh.close());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    for (const h of handles) await h.close().catch(() => undefined);
    handles = [];
    rmSync(dir, { recursive: true, force: true });
  });

  test('the addon is built (npm run build)', () => {
    assert.equal(nativeSendfileAvailable(), true);
  });

  test('whole file and slices arrive byte-exact, on one keep-alive connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let sockets = 0;
    const get = (q: string) =>
      new Promise<Buffer>((resolve, reject) => {
        const r = http.get(`${base}/?${q}`, { agent }, (m) => {
          const parts: Buffer[] = [];
          m.on('data', (c: Buffer) => parts.push(c));
          m.on('end', () => (m.statusCode === 200 ? resolve(Buffer.concat(parts)) : reject(new Error(`status ${m.statusCode}`))));
        });
        r.on('socket', (s) => { if (!(s as { _counted?: boolean })._counted) { (s as { _counted?: boolean })._counted = true; sockets++; } });
        r.on('error', reject);
      });
    assert.ok((await get('')).equals(data));
    for (const [off, len] of [[0, 1], [1, 65536], [7 * 1024 * 1024 + 3, 5 * 1024 * 1024], [data.length - 10, 10]] as const) {
      assert.ok((await get(`off=${off}&len=${len}`)).equals(data.subarray(off, off + len)), `slice ${off}+${len}`);
    }
    assert.equal(sockets, 1, 'the connection stays usable after each transfer');
    agent.destroy();
  });

  test('a client that stops reading and leaves ends the transfer with an error, not a hang', async () => {
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve, reject) => {
      const c = connect(port, '127.0.0.1', () => c.write('GET /?id=stall&stall=2000 HTTP/1.1\r\nHost: x\r\n\r\n'));
      c.pause(); // never reads: the socket buffers fill and sendfile waits for POLLOUT
      c.on('error', reject);
      setTimeout(() => { c.destroy(); resolve(); }, 300);
    });
    const o = await outcome('stall');
    assert.ok(o, 'the transfer ended');
    assert.equal(o.ok, false);
    assert.ok(o.sent > 0 && o.sent < data.length, `sent ${o?.sent}`);
  });

  test('a file shorter than promised fails instead of sending garbage', async () => {
    const got = await new Promise<{ bytes: number; aborted: boolean }>((resolve) => {
      let bytes = 0;
      const r = http.get(`${base}/?id=short&off=${data.length - 100}&len=200`, (m) => {
        m.on('data', (c: Buffer) => (bytes += c.length));
        m.on('end', () => resolve({ bytes, aborted: false }));
        m.on('error', () => resolve({ bytes, aborted: true }));
        m.on('aborted', () => resolve({ bytes, aborted: true }));
      });
      r.on('error', () => resolve({ bytes, aborted: true }));
    });
    assert.equal(got.aborted, true);
    assert.equal(got.bytes, 100);
    assert.deepEqual(await outcome('short'), { ok: false, sent: 100 });
  });
  // The addon itself, below trySendfile: argument checks and descriptor ownership.
  const raw = (): { start(s: number, f: number, o: number, l: number, t: number, done: (e: number, n: number) => void): number } =>
    createRequire(import.meta.url)('../../build/Release/soci_sendfile.node');

  test('start refuses NaN, infinite, fractional and past-2^53 offsets and lengths', () => {
    const fd = openSync(file, 'r');
    try {
      for (const [off, len] of [[NaN, 1], [0, NaN], [Infinity, 1], [0, Infinity], [0.5, 1], [0, 1.5], [2 ** 53, 1], [2 ** 52, 2 ** 52]]) {
        assert.throws(() => raw().start(fd, fd, off as number, len as number, 1000, () => undefined), /bad arguments/, `${off}+${len}`);
      }
    } finally {
      closeSync(fd);
    }
  });

  test('closing the file descriptor mid-transfer (and reusing its number) cannot change the bytes sent', async () => {
    const other = join(dir, 'other');
    writeFileSync(other, Buffer.alloc(data.length, 0x5a));
    let serverSide: Socket | undefined;
    const srv = createServer((s) => { serverSide = s; });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const client = connect((srv.address() as AddressInfo).port, '127.0.0.1');
    client.pause();
    const parts: Buffer[] = [];
    client.on('data', (c: Buffer) => parts.push(c));
    const ended = new Promise<void>((r) => client.on('end', () => r()));
    while (!serverSide) await new Promise((r) => setTimeout(r, 5));
    const sfd = (serverSide as unknown as { _handle: { fd: number } })._handle.fd;
    const fd = openSync(file, 'r');
    const done = new Promise<[number, number]>((resolve) => raw().start(sfd, fd, 0, data.length, 10_000, (e, n) => resolve([e, n])));
    await new Promise((r) => setTimeout(r, 150)); // the socket buffers fill; the thread waits for POLLOUT
    closeSync(fd);
    const reused = openSync(other, 'r');
    try {
      assert.equal(reused, fd, 'the descriptor number is reused, so the test can tell');
      client.resume();
      const [errno, sent] = await done;
      assert.deepEqual([errno, sent], [0, data.length]);
      serverSide.end();
      await ended;
      assert.ok(Buffer.concat(parts).equals(data), 'every byte comes from the file the transfer started with');
    } finally {
      closeSync(reused);
      client.destroy();
      serverSide.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    }
  });
});
