/**
 * `soci-proxy serve` as an operator meets it, through the real CLI process (dist/cli.js): every wrong
 * setting (flag, SOCI_PROXY_* variable, config-file key) stops the start with exit 1 and one line naming
 * the setting; precedence flag > environment > config file > default, observed on the port it binds and
 * the index mode it logs; HTTPS with a self-signed certificate made by openssl here (node fetch with the
 * CA, and skopeo with --cert-dir against a docker-registry upstream); /healthz and /readyz; and graceful
 * shutdown: a blob download that is slow because the (in-test) upstream trickles it completes with every
 * byte after SIGTERM, new connections are refused, and the process exits 0 before --shutdown-timeout; past
 * the deadline it cuts the download and exits 1.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, get as httpGet, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, fetch as undiciFetch } from 'undici';
import {
  freePort, pushImage, randomBytes, runCommand, smallImage, startDaemon, startProxy, startRegistry, tempDir,
  type Daemon, type Registry,
} from './harness/index.js';
import { resolveSettings, unknownEnvNames } from '../src/proxy/main.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const HAVE_DIST = existsSync(CLI);
const SKIP = HAVE_DIST ? false : 'run `npm run build` first (dist/cli.js missing)';
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The environment without any SOCI_PROXY_* of the caller, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SOCI_PROXY_')) env[k] = v;
  return { ...env, ...extra };
}

async function serveFails(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await runCommand(process.execPath, [CLI, 'serve', ...args], { env: cleanEnv(env), check: false, timeoutMs: 20_000 });
  assert.equal(r.code, 1, `expected exit 1 for ${args.join(' ')} ${JSON.stringify(env)}; stdout ${r.stdout} stderr ${r.stderr}`);
  assert.equal(r.stdout, '', 'nothing on stdout');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0] as string, /^soci-proxy: /);
  return lines[0] as string;
}

function canConnectTo(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

describe('settings: validation through the real CLI', { skip: SKIP }, () => {
  const dir = tempDir('serve-settings');
  after(() => dir.remove());
  const UP = ['--upstream', 'http://127.0.0.1:9'];

  test('an invalid SOCI_PROXY_INDEX_MODE exits 1 with one line naming the variable', async () => {
    const line = await serveFails(UP, { SOCI_PROXY_INDEX_MODE: 'sometimes' });
    assert.match(line, /SOCI_PROXY_INDEX_MODE/);
    assert.match(line, /"sometimes"/);
    assert.match(line, /wait, background, off/);
  });

  test('each kind of wrong value, from each source, names its setting', async () => {
    assert.match(await serveFails([...UP, '--index-mode', 'never']), /flag --index-mode .*"never"/);
    assert.match(await serveFails(UP, { SOCI_PROXY_SPAN_SIZE: '4XB' }), /SOCI_PROXY_SPAN_SIZE.*"4XB".*bytes/);
    assert.match(await serveFails(UP, { SOCI_PROXY_WORKERS: '-2' }), /SOCI_PROXY_WORKERS.*whole number/);
    assert.match(await serveFails(UP, { SOCI_PROXY_REFERRERS: 'maybe' }), /SOCI_PROXY_REFERRERS.*true or false/);
    assert.match(await serveFails(UP, { SOCI_PROXY_INDEX_WAIT: 'soon' }), /SOCI_PROXY_INDEX_WAIT.*seconds/);
    assert.match(await serveFails([...UP, '--listen', '127.0.0.1:70000']), /--listen .*70000/);
    assert.match(await serveFails([...UP, '--listen', 'nocolon']), /--listen .*nocolon/);
    assert.match(await serveFails([]), /at least one --upstream/);
    assert.match(await serveFails([], { SOCI_PROXY_UPSTREAM: 'ftp://example.com' }), /only http:\/\/ and https:\/\//);
    assert.match(await serveFails(UP, { SOCI_PROXY_REDIS: 'http://redis:6379' }), /--redis: unsupported scheme "http:"/);
    assert.match(await serveFails(UP, { SOCI_PROXY_REDIS: 'not a url' }), /--redis must be a URL/);
    assert.match(await serveFails([...UP, '--tls-cert', join(dir.path, 'c.pem')]), /--tls-cert and --tls-key go together/);
    assert.match(await serveFails([...UP, '--tls-cert', join(dir.path, 'none.pem'), '--tls-key', join(dir.path, 'none.key')]), /cannot read --tls-cert .*none\.pem: ENOENT/);
    assert.match(await serveFails([...UP, '--bogus-flag']), /--bogus-flag/);
  });

  test('config file: wrong values, unknown keys, bad JSON, not an object', async () => {
    const f = (name: string, text: string): string => {
      const p = join(dir.path, name);
      writeFileSync(p, text);
      return p;
    };
    assert.match(await serveFails(['--config', f('a.json', '{"upstream":["http://127.0.0.1:9"],"indexMode":"eager"}')]), /config key indexMode .*"eager"/);
    assert.match(await serveFails([], { SOCI_PROXY_CONFIG: f('b.json', '{"upstream":["http://127.0.0.1:9"],"indexmode":"off"}') }), /unknown key "indexmode" in config file/);
    assert.match(await serveFails(['--config', f('c.json', '{"upstream": [')]), /cannot read config file .*c\.json/);
    assert.match(await serveFails(['--config', f('d.json', '["http://127.0.0.1:9"]')]), /must hold a JSON object/);
    assert.match(await serveFails(['--config', join(dir.path, 'missing.json')]), /cannot read config file .*missing\.json/);
    assert.match(await serveFails(['--config', f('e.json', '{"upstream":["http://127.0.0.1:9"],"cacheMaxBytes":true}')]), /config key cacheMaxBytes/);
  });

  test('resolveSettings: flag > environment > config file > default, per setting', () => {
    const cfg = join(dir.path, 'prec.json');
    writeFileSync(cfg, JSON.stringify({ indexMode: 'off', spanSize: '1MiB', tagCache: 5, upstream: ['http://cfg:1'] }));
    const s = resolveSettings(['--config', cfg, '--index-mode', 'wait', '--no-referrers'], { SOCI_PROXY_INDEX_MODE: 'background', SOCI_PROXY_SPAN_SIZE: '2MiB' });
    assert.equal(s['index-mode'], 'wait'); // flag over env and file
    assert.equal(s['span-size'], 2 * 1024 * 1024); // env over file
    assert.equal(s['tag-cache'], 5); // file over default
    assert.deepEqual(s.upstream, ['http://cfg:1']);
    assert.equal(s.referrers, false);
    assert.equal(s['log-level'], 'info'); // default
    const e = resolveSettings([], { SOCI_PROXY_UPSTREAM: 'a=http://a:1, b=http://b:2', SOCI_PROXY_REFERRERS: 'off' });
    assert.deepEqual(e.upstream, ['a=http://a:1', 'b=http://b:2']);
    assert.equal(e.referrers, false);
  });

  test('unknown SOCI_PROXY_* names are reported, Kubernetes service links are not', () => {
    const env = { SOCI_PROXY_UPSTREM: 'x', SOCI_PROXY_UPSTREAM: 'x', SOCI_PROXY_SERVICE_HOST: '10.0.0.1', SOCI_PROXY_SERVICE_PORT: '5000', SOCI_PROXY_SERVICE_PORT_REGISTRY: '5000', SOCI_PROXY_PORT: 'tcp://10.0.0.1:5000', SOCI_PROXY_PORT_5000_TCP_ADDR: '10.0.0.1', OTHER: 'y' };
    assert.deepEqual(unknownEnvNames(env), ['SOCI_PROXY_UPSTREM']);
  });
});

describe('settings: precedence on a running proxy', { skip: SKIP }, () => {
  const dir = tempDir('serve-prec');
  after(() => dir.remove());

  /** Starts serve with the given flags/env, waits until `port` answers /healthz, returns the startup log record. */
  async function run(args: string[], env: Record<string, string>, port: number): Promise<Record<string, unknown>> {
    const log = join(dir.path, `p-${port}.log`);
    const d = await startDaemon({
      name: 'soci-proxy', cmd: process.execPath, args: [CLI, 'serve', ...args], env: cleanEnv(env), logFile: log, cwd: dir.path,
      ready: async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200,
    });
    try {
      const rec = d.logs().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r.msg === 'soci-proxy listening');
      assert.ok(rec, d.logs());
      return rec;
    } finally {
      assert.deepEqual(await d.stop(), { code: 0, signal: null }, d.logs());
    }
  }

  test('listen and index mode come from flag, else environment, else config file', async () => {
    const [a, b, c] = [await freePort(), await freePort(), await freePort()];
    const cfg = join(dir.path, 'config.json');
    writeFileSync(cfg, JSON.stringify({ listen: `127.0.0.1:${a}`, indexMode: 'off', upstream: ['http://127.0.0.1:9'], cacheDir: join(dir.path, 'cache') }));
    const env = { SOCI_PROXY_CONFIG: cfg, SOCI_PROXY_LISTEN: `127.0.0.1:${b}`, SOCI_PROXY_INDEX_MODE: 'background' };
    const r1 = await run(['--listen', `127.0.0.1:${c}`], env, c);
    assert.equal(r1.listen, `127.0.0.1:${c}`);
    assert.equal(r1.indexMode, 'background');
    const r2 = await run([], env, b);
    assert.equal(r2.listen, `127.0.0.1:${b}`);
    assert.equal(r2.indexMode, 'background');
    const r3 = await run([], { SOCI_PROXY_CONFIG: cfg }, a);
    assert.equal(r3.listen, `127.0.0.1:${a}`);
    assert.equal(r3.indexMode, 'off');
    assert.deepEqual(r3.upstreams, [{ name: '127.0.0.1:9', url: 'http://127.0.0.1:9' }]);
  });
});

describe('HTTPS with --tls-cert/--tls-key', { skip: SKIP }, () => {
  const dir = tempDir('serve-tls');
  let registry: Registry;
  let daemon: Daemon;
  let port: number;
  let ca: Buffer;
  let agent: Agent;

  before(async () => {
    // A CA and a server certificate for 127.0.0.1 signed by it (skopeo wants a real chain, not a leaf CA).
    const o = (args: string[]): Promise<unknown> => runCommand('openssl', args, { cwd: dir.path });
    await o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=soci-proxy test CA', '-keyout', 'ca.key', '-out', 'ca.crt']);
    await o(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr']);
    writeFileSync(join(dir.path, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
    await o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'server.crt']);
    ca = readFileSync(join(dir.path, 'ca.crt'));
    agent = new Agent({ connect: { ca } });
    registry = await startRegistry();
    await pushImage(await smallImage(), { registry: registry.url, repo: 'lib/small', tag: 'v1' });
    port = await freePort();
    daemon = await startDaemon({
      name: 'soci-proxy-tls', cmd: process.execPath, env: cleanEnv(), logFile: join(dir.path, 'proxy.log'), cwd: dir.path,
      args: [CLI, 'serve', '--listen', `127.0.0.1:${port}`, '--upstream', registry.url, '--index-mode', 'off', '--cache-dir', join(dir.path, 'cache'),
        '--tls-cert', join(dir.path, 'server.crt'), '--tls-key', join(dir.path, 'server.key')],
      ready: async () => (await undiciFetch(`https://127.0.0.1:${port}/healthz`, { dispatcher: agent })).status === 200,
    });
  });
  after(async () => {
    await daemon?.stop();
    await agent?.close();
    await registry?.stop();
    dir.remove();
  });

  test('health and readiness over HTTPS, verified against the CA; plain HTTP gets no answer', async () => {
    const h = await undiciFetch(`https://127.0.0.1:${port}/healthz`, { dispatcher: agent });
    assert.deepEqual([h.status, await h.json()], [200, { status: 'ok' }]);
    const r = await undiciFetch(`https://127.0.0.1:${port}/readyz`, { dispatcher: agent });
    assert.deepEqual([r.status, await r.json()], [200, { status: 'ready' }]);
    await assert.rejects(undiciFetch(`https://127.0.0.1:${port}/healthz`), 'the default trust store does not know the test CA');
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) }));
  });

  test('skopeo pulls through it with --cert-dir (the manifest and every blob byte-identical)', async () => {
    const certs = join(dir.path, 'certs.d');
    await runCommand('mkdir', ['-p', certs]);
    writeFileSync(join(certs, 'ca.crt'), ca);
    const viaProxy = await runCommand('skopeo', ['inspect', '--raw', '--cert-dir', certs, `docker://127.0.0.1:${port}/lib/small:v1`]);
    const direct = await runCommand('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/lib/small:v1`]);
    assert.equal(viaProxy.stdout, direct.stdout);
    const out = join(dir.path, 'pulled');
    await runCommand('skopeo', ['copy', '--src-cert-dir', certs, `docker://127.0.0.1:${port}/lib/small:v1`, `oci:${out}:v1`]);
    const manifest = JSON.parse(direct.stdout) as { config: { digest: string }; layers: { digest: string }[] };
    for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
      const bytes = readFileSync(join(out, 'blobs', 'sha256', d.slice('sha256:'.length)));
      assert.equal(sha(bytes), d);
    }
    const fail = await runCommand('skopeo', ['inspect', '--raw', `docker://127.0.0.1:${port}/lib/small:v1`], { check: false });
    assert.notEqual(fail.code, 0, 'without the CA skopeo must refuse the certificate');
  });
});

/** An upstream registry that trickles one blob: `chunk` bytes every `everyMs`. */
async function trickleUpstream(blob: Buffer, chunk: number, everyMs: number): Promise<{ url: string; server: Server; digest: string; served: () => number }> {
  const digest = sha(blob);
  let served = 0;
  const server = createServer((req, res) => {
    if (req.url === '/v2/' || req.url === '/v2') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Docker-Distribution-API-Version': 'registry/2.0' }).end('{}');
      return;
    }
    if (req.url !== `/v2/lib/slow/blobs/${digest}`) {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(blob.length), 'Docker-Content-Digest': digest });
    if (req.method === 'HEAD') return void res.end();
    let off = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      const part = blob.subarray(off, off + chunk);
      off += part.length;
      served += part.length;
      if (off >= blob.length) {
        clearInterval(timer);
        res.end(part);
      } else res.write(part);
    }, everyMs);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (typeof addr !== 'object' || addr === null) throw new Error('no address');
  return { url: `http://127.0.0.1:${addr.port}`, server, digest, served: () => served };
}

/** Starts a GET and resolves once the first body bytes arrived; `done` gives every byte (or the error). */
function startDownload(url: string): Promise<{ res: IncomingMessage; done: Promise<Buffer> }> {
  return new Promise((resolveStart, rejectStart) => {
    const req = httpGet(url, { agent: false }, (res) => {
      const parts: Buffer[] = [];
      let started = false;
      const done = new Promise<Buffer>((resolveDone, rejectDone) => {
        res.on('data', (b: Buffer) => {
          parts.push(b);
          if (!started) {
            started = true;
            resolveStart({ res, done });
          }
        });
        res.on('end', () => resolveDone(Buffer.concat(parts)));
        res.on('error', rejectDone);
        res.on('aborted', () => rejectDone(new Error(`aborted after ${Buffer.concat(parts).length} bytes`)));
      });
      done.catch(() => undefined);
    });
    req.on('error', rejectStart);
  });
}

describe('graceful shutdown on SIGTERM', { skip: SKIP }, () => {
  const blob = randomBytes(2 * 1024 * 1024, 42);

  test('an in-flight slow download completes byte for byte, new connections are refused, exit 0 before the deadline', async () => {
    // 2 MiB at 64 KiB per 60 ms: about 2 s, well inside the 15 s deadline.
    const up = await trickleUpstream(blob, 64 * 1024, 60);
    const proxy = await startProxy({ upstream: up.url, extraArgs: ['--shutdown-timeout', '15'], env: cleanEnv() });
    try {
      const ready = await fetch(`${proxy.url}/readyz`);
      assert.deepEqual([ready.status, await ready.json()], [200, { status: 'ready' }]);
      const port = Number(proxy.host.split(':')[1]);
      const { res, done } = await startDownload(`${proxy.url}/v2/lib/slow/blobs/${up.digest}`);
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-length'], String(blob.length));
      assert.ok(up.served() < blob.length / 2, `the download must still be in flight at SIGTERM (upstream served ${up.served()})`);
      const t0 = Date.now();
      process.kill(proxy.daemon.pid, 'SIGTERM');
      // The listener closes at once: poll until a new connection is refused, long before the body ends.
      let refusedAt: number | undefined;
      while (Date.now() - t0 < 1500) {
        if (!(await canConnectTo(port))) {
          refusedAt = Date.now() - t0;
          break;
        }
        await sleep(25);
      }
      assert.ok(refusedAt !== undefined, 'new connections must be refused within 1.5 s of SIGTERM');
      assert.ok(up.served() < blob.length, 'the listener closed while the body was still streaming');
      const body = await done;
      assert.equal(body.length, blob.length);
      assert.ok(body.equals(blob), 'every byte of the blob');
      const exit = await proxy.daemon.waitExit();
      const ms = Date.now() - t0;
      assert.deepEqual(exit, { code: 0, signal: null }, proxy.logs());
      assert.ok(ms < 15_000, `exited after ${ms} ms, past the deadline`);
      assert.match(proxy.logs(), /shutdown complete/);
    } finally {
      await proxy.stop();
      up.server.closeAllConnections();
      up.server.close();
    }
  });

  test('past --shutdown-timeout the download is cut and the process exits 1', async () => {
    // 2 MiB at 16 KiB per 100 ms: about 13 s, far past the 1 s deadline.
    const up = await trickleUpstream(blob, 16 * 1024, 100);
    const proxy = await startProxy({ upstream: up.url, extraArgs: ['--shutdown-timeout', '1'], env: cleanEnv() });
    try {
      const { done } = await startDownload(`${proxy.url}/v2/lib/slow/blobs/${up.digest}`);
      const t0 = Date.now();
      process.kill(proxy.daemon.pid, 'SIGTERM');
      await assert.rejects(done, 'the cut download must not look complete');
      const exit = await proxy.daemon.waitExit();
      const ms = Date.now() - t0;
      assert.deepEqual(exit, { code: 1, signal: null }, proxy.logs());
      assert.ok(ms >= 900 && ms < 5000, `exited after ${ms} ms`);
      assert.match(proxy.logs(), /shutdown deadline reached/);
    } finally {
      await proxy.stop();
      up.server.closeAllConnections();
      up.server.close();
    }
  });
});
