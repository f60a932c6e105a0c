/**
 * A real upstream registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1:<free port>
 * with filesystem storage under its own dir, deletes enabled and optional htpasswd basic auth
 * (test-environment.md §3). `requests()` parses the combined-log lines the registry writes for every
 * request (`"GET /v2/... HTTP/1.1" 206 <bytes>`), so tests can count requests and bytes served per blob —
 * e.g. to prove each layer was streamed from upstream only once. The registry does not log the Range
 * header, so entries carry the status and byte count only. Remember the registry's OCI Accept quirk (§3.3).
 */
import { mkdirSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { startDaemon, runCommand, type Daemon } from './process.js';
import { tempDir } from './cleanup.js';

export interface RegistryOptions {
  /** State dir (config, data, log); a fresh temp dir by default. */
  dir?: string;
  auth?: { htpasswd: { user: string; password: string } };
  /** Proxy (pull-through cache) mode against this upstream URL (§3.5). */
  proxyRemoteUrl?: string;
}

export interface AccessLogEntry {
  method: string;
  /** Request URI as logged (path and query). */
  path: string;
  status: number;
  /** Response body bytes written. */
  bytes: number;
  /** The blob digest when the path is /v2/<name>/blobs/<digest>. */
  blob?: string;
  /** Repository name for /v2/<name>/... paths. */
  repo?: string;
}

export interface Registry {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT */
  host: string;
  dir: string;
  daemon: Daemon;
  /** Basic auth header value when auth is on. */
  authorization?: string;
  stop(): Promise<void>;
  /** Every request logged so far, in order. */
  requests(): AccessLogEntry[];
  /** Waits until the log file stops growing (the registry logs a request after sending its response). */
  settle(quietMs?: number): Promise<void>;
  /** Sum of body bytes served for one blob (GET only), optionally only from entries after index `from`. */
  blobBytes(digest: string, from?: number): number;
}

const COMBINED = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) (\d+|-)/;

/** Parses the combined-log lines out of a docker-registry log. */
export function parseAccessLog(text: string): AccessLogEntry[] {
  const out: AccessLogEntry[] = [];
  for (const line of text.split('\n')) {
    const m = COMBINED.exec(line);
    if (!m) continue;
    const [, method, path, status, bytes] = m as unknown as [string, string, string, string, string];
    const e: AccessLogEntry = { method, path, status: Number(status), bytes: bytes === '-' ? 0 : Number(bytes) };
    const p = path.split('?')[0] ?? path;
    const blob = /^\/v2\/(.+)\/blobs\/([a-z0-9]+:[a-f0-9]+)$/.exec(p);
    if (blob) {
      e.repo = blob[1];
      e.blob = blob[2];
    } else {
      const repo = /^\/v2\/(.+)\/(manifests|tags|blobs)\//.exec(p);
      if (repo) e.repo = repo[1];
    }
    out.push(e);
  }
  return out;
}

/** A bcrypt ($2b$) hash from the system's crypt(3) (libxcrypt) through perl, which Debian always has. */
export async function bcryptHash(password: string): Promise<string> {
  const alphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let salt = '';
  for (let i = 0; i < 22; i++) salt += alphabet[Math.floor(Math.random() * 64)];
  const res = await runCommand('perl', ['-e', 'my $p = <STDIN>; chomp $p; print crypt($p, $ARGV[0])', `$2b$10$${salt}`], { input: `${password}\n` });
  if (!res.stdout.startsWith('$2b$10$') || res.stdout.length !== 60) throw new Error(`crypt(3) has no bcrypt here: got ${JSON.stringify(res.stdout)}`);
  return res.stdout;
}

/** Starts docker-registry and waits until GET /v2/ answers. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<Registry> {
  const tmp = opts.dir === undefined ? tempDir('registry') : undefined;
  const dir = opts.dir ?? tmp!.path;
  mkdirSync(join(dir, 'data'), { recursive: true });
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let authorization: string | undefined;
  let authYaml = '';
  if (opts.auth) {
    const { user, password } = opts.auth.htpasswd;
    writeFileSync(join(dir, 'htpasswd'), `${user}:${await bcryptHash(password)}\n`);
    authYaml = `auth:\n  htpasswd:\n    realm: test-realm\n    path: ${join(dir, 'htpasswd')}\n`;
    authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  }
  const proxyYaml = opts.proxyRemoteUrl ? `proxy:\n  remoteurl: ${opts.proxyRemoteUrl}\n` : '';
  const config = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog: {disabled: false}',
    'storage:',
    '  cache: {blobdescriptor: inmemory}',
    `  filesystem: {rootdirectory: ${join(dir, 'data')}}`,
    '  delete: {enabled: true}',
    'http:',
    `  addr: ${host}`,
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
    '',
  ].join('\n') + authYaml + proxyYaml;
  writeFileSync(join(dir, 'config.yml'), config);
  const logFile = join(dir, 'registry.log');
  const daemon = await startDaemon({
    name: 'docker-registry',
    cmd: '/usr/bin/docker-registry',
    args: ['serve', join(dir, 'config.yml')],
    cwd: dir,
    logFile,
    ready: async () => {
      const res = await fetch(`http://${host}/v2/`);
      await res.arrayBuffer();
      return res.status === 200 || res.status === 401;
    },
  });
  const requests = (): AccessLogEntry[] => parseAccessLog(daemon.logs());
  return {
    url: `http://${host}`,
    host,
    dir,
    daemon,
    authorization,
    async stop() {
      await daemon.stop();
      tmp?.remove();
    },
    requests,
    async settle(quietMs = 100) {
      let size = -1;
      for (let i = 0; i < 100; i++) {
        const now = statSync(logFile).size;
        if (now === size) return;
        size = now;
        await new Promise((r) => setTimeout(r, quietMs));
      }
    },
    blobBytes(digest, from = 0) {
      return requests()
        .slice(from)
        .filter((e) => e.blob === digest && e.method === 'GET' && e.status < 300)
        .reduce((n, e) => n + e.bytes, 0);
    },
  };
}
