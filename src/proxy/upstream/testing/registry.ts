/**
 * Starts a real docker-registry 2.8 (Debian's /usr/bin/docker-registry) for tests: its own temp dir and a
 * free loopback port, optional htpasswd basic auth, token auth or TLS, and helpers that push blobs and
 * manifests through the registry API with fetch. The process is spawned directly, so the PID we hold is the
 * registry's own; `stop()` kills it by that PID and removes the temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import { sha256 } from '../../../oci/digest.js';

export interface RegistryOptions {
  /** htpasswd lines (`user:bcrypt`) → basic auth. */
  htpasswd?: string[];
  /** Token auth against a token service. */
  token?: { realm: string; service: string; issuer: string; rootCertFile: string };
  /** Serve https with this cert/key. */
  tls?: { certFile: string; keyFile: string };
}

export interface TestRegistry {
  url: string;
  host: string;
  dir: string;
  pid: number;
  stop(): Promise<void>;
  /** Pushes a blob; `authorization` is sent on every request. */
  pushBlob(repo: string, data: Uint8Array, authorization?: string): Promise<string>;
  /** Pushes a manifest under `reference` (tag or digest) with this Content-Type; returns its digest. */
  pushManifest(repo: string, reference: string, bytes: Uint8Array, mediaType: string, authorization?: string): Promise<string>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitReady(url: string, child: ChildProcess, log: () => string, fetch: (u: string) => Promise<{ arrayBuffer(): Promise<ArrayBuffer> }>): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${log()}`);
    try {
      const res = await fetch(`${url}/v2/`);
      await res.arrayBuffer();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`docker-registry did not start: ${log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'upstream-registry-'));
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log: {level: warn}',
    `storage: {cache: {blobdescriptor: inmemory}, filesystem: {rootdirectory: ${dir}/data}, delete: {enabled: true}}`,
    'http:',
    `  addr: 127.0.0.1:${port}`,
  ];
  if (opts.tls) lines.push(`  tls: {certificate: ${opts.tls.certFile}, key: ${opts.tls.keyFile}}`);
  if (opts.htpasswd) {
    writeFileSync(join(dir, 'htpasswd'), opts.htpasswd.join('\n') + '\n');
    lines.push(`auth: {htpasswd: {realm: test-realm, path: ${dir}/htpasswd}}`);
  } else if (opts.token) {
    const t = opts.token;
    lines.push(`auth: {token: {realm: "${t.realm}", service: "${t.service}", issuer: "${t.issuer}", rootcertbundle: ${t.rootCertFile}}}`);
  }
  writeFileSync(join(dir, 'config.yml'), lines.join('\n') + '\n');
  const child = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
  child.stderr?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
  const scheme = opts.tls ? 'https' : 'http';
  const host = `127.0.0.1:${port}`;
  const url = `${scheme}://${host}`;
  const stop = async () => {
    if (child.exitCode === null && child.pid !== undefined) {
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, 'SIGTERM');
      await exited;
    }
    await dispatcher.close();
    rmSync(dir, { recursive: true, force: true });
  };
  // The test cert is trusted by this helper's own dispatcher only.
  const dispatcher = new Agent(opts.tls ? { connect: { ca: readFileSync(opts.tls.certFile, 'utf8') } } : {});
  const fetch = (u: string | URL, init: Parameters<typeof undiciFetch>[1] = {}) => undiciFetch(u, { ...init, dispatcher });
  try {
    await waitReady(url, child, () => log, fetch);
  } catch (err) {
    await stop();
    throw err;
  }
  const auth = (a?: string): Record<string, string> => (a ? { authorization: a } : {});
  return {
    url, host, dir, pid: child.pid!, stop,
    async pushBlob(repo, data, authorization) {
      const digest = sha256(data);
      const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: auth(authorization) });
      await start.arrayBuffer();
      if (start.status !== 202) throw new Error(`blob upload start: ${start.status}`);
      const loc = new URL(start.headers.get('location')!, url);
      loc.searchParams.set('digest', digest);
      const put = await fetch(loc, { method: 'PUT', body: data, headers: { ...auth(authorization), 'content-type': 'application/octet-stream' } });
      await put.arrayBuffer();
      if (put.status !== 201) throw new Error(`blob upload: ${put.status}`);
      return digest;
    },
    async pushManifest(repo, reference, bytes, mediaType, authorization) {
      const put = await fetch(`${url}/v2/${repo}/manifests/${reference}`, { method: 'PUT', body: bytes, headers: { ...auth(authorization), 'content-type': mediaType } });
      const text = await put.text();
      if (put.status !== 201) throw new Error(`manifest push: ${put.status} ${text}`);
      return sha256(bytes);
    },
  };
}

