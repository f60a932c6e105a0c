/**
 * The deployment files under deploy/, checked the way a cluster or `docker compose` would reject them:
 * YAML parsed by PyYAML (python3 -c 'import yaml'; the repo has no YAML dependency) and TOML by
 * python3's tomllib, then a small structural validator here: apiVersion/kind pairs and required fields,
 * selectors that match pod labels, probe paths (/healthz, /readyz) on ports the container declares,
 * Service targetPorts that name a containerPort, requests ≤ limits, every SOCI_PROXY_* name and value
 * valid per src/proxy/options.ts, grace periods longer than --shutdown-timeout, compose services with
 * health checks. Then the image itself: deploy/Dockerfile built with buildah on an offline base
 * (`localhost/node:20-bookworm-slim` assembled here from the host's node, npm and a few binaries, since
 * Docker Hub is unreachable) and run with podman: it must answer /healthz as a non-root user, and serve
 * a blob from a docker-registry upstream. That part skips, printing the exact reason, where buildah,
 * podman or the npm registry are unavailable.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVE_OPTIONS, envName, parseOptionValue } from '../src/proxy/options.js';
import { freePort, hostBinariesRootfs, pushImage, runCommand, smallImage, startRegistry, tempDir } from './harness/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEPLOY = join(ROOT, 'deploy');
const K8S = join(DEPLOY, 'kubernetes');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const HAVE_YAML = spawnSync('python3', ['-c', 'import yaml'], { stdio: 'ignore' }).status === 0;
const YAML_SKIP = HAVE_YAML ? false : 'PyYAML missing: python3 -c "import yaml" failed (apt-get install python3-yaml, see scripts/test-deps.sh)';

function parseYaml(path: string): Obj[] {
  const r = spawnSync('python3', ['-c', 'import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))', path], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${path}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Obj[];
}

function parseToml(path: string): Obj {
  const r = spawnSync('python3', ['-c', 'import sys, json, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], "rb"))))', path], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${path}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Obj;
}

const OPTION_BY_ENV = new Map(SERVE_OPTIONS.map((o) => [envName(o.flag), o]));

/** A SOCI_PROXY_* name must be a setting and its value must parse as that setting. */
function checkSetting(name: string, value: unknown, where: string): void {
  const spec = OPTION_BY_ENV.get(name);
  assert.ok(spec, `${where}: ${name} is not a setting (valid: ${[...OPTION_BY_ENV.keys()].join(', ')})`);
  if (typeof value === 'string' && !/\$\{/.test(value)) parseOptionValue(spec, value, `${where} ${name}`);
}

/** Kubernetes quantities: CPU (500m, 2) and bytes (768Mi, 2Gi, 1e9). */
function quantity(q: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
  assert.ok(m, `not a quantity: ${q}`);
  const f: Record<string, number> = { '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(m[1]) * (f[m[2] ?? ''] as number);
}

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const KINDS: Record<string, string[]> = {
  v1: ['Namespace', 'ConfigMap', 'Service', 'Secret'],
  'apps/v1': ['Deployment'],
  'policy/v1': ['PodDisruptionBudget'],
  'kustomize.config.k8s.io/v1beta1': ['Kustomization'],
};

function matches(selector: Obj, labels: Obj): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

describe('deploy/kubernetes manifests', { skip: YAML_SKIP }, () => {
  const files = existsSync(K8S) ? readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f)).sort() : [];
  const docs = files.flatMap((f) => (HAVE_YAML ? parseYaml(join(K8S, f)) : []).map((doc) => ({ file: f, doc })));
  const of = (kind: string): Obj[] => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc);
  const proxyDeployment = (): Obj => {
    const d = of('Deployment').find((x) => x.metadata.name === 'soci-proxy');
    assert.ok(d, 'a Deployment named soci-proxy');
    return d;
  };
  const shutdownTimeout = (): number => {
    const cm = of('ConfigMap').find((x) => x.metadata.name === 'soci-proxy');
    return Number(cm?.data?.SOCI_PROXY_SHUTDOWN_TIMEOUT ?? 30);
  };

  test('every document has a known apiVersion/kind, a DNS-1123 name and one namespace', () => {
    assert.ok(files.length >= 6, `manifests: ${files.join(', ')}`);
    for (const { file, doc } of docs) {
      assert.ok(KINDS[doc.apiVersion]?.includes(doc.kind), `${file}: unknown ${doc.apiVersion} ${doc.kind}`);
      if (doc.kind === 'Kustomization') continue;
      assert.match(String(doc.metadata?.name), DNS1123, `${file}: metadata.name`);
      if (doc.kind !== 'Namespace') assert.equal(doc.metadata.namespace, 'soci-proxy', `${file} ${doc.kind}: namespace`);
    }
    const kinds = docs.map((d) => d.doc.kind);
    for (const k of ['Namespace', 'ConfigMap', 'Deployment', 'Service', 'PodDisruptionBudget']) assert.ok(kinds.includes(k), `missing ${k}`);
    assert.equal(of('Deployment').length, 2, 'the proxy and Redis');
    assert.equal(of('Service').length, 2, 'the proxy and Redis');
  });

  test('kustomization lists every manifest file exactly once', () => {
    const k = of('Kustomization')[0];
    assert.ok(k);
    assert.deepEqual([...k.resources].sort(), files.filter((f) => !f.startsWith('kustomization')));
  });

  test('Deployments: selector matches the pod labels; containers with image, ports, resources requests ≤ limits', () => {
    for (const d of of('Deployment')) {
      const spec = d.spec;
      assert.ok(Number.isInteger(spec.replicas) && spec.replicas >= 1, `${d.metadata.name}: replicas`);
      assert.ok(matches(spec.selector.matchLabels, spec.template.metadata.labels), `${d.metadata.name}: selector must match template labels`);
      assert.equal(spec.template.spec.enableServiceLinks, false, `${d.metadata.name}: service links would inject SOCI_PROXY_SERVICE_HOST etc.`);
      assert.ok(spec.template.spec.containers.length >= 1);
      for (const c of spec.template.spec.containers) {
        assert.match(c.name, DNS1123);
        assert.ok(typeof c.image === 'string' && c.image.length > 0, `${c.name}: image`);
        for (const p of c.ports) {
          assert.ok(Number.isInteger(p.containerPort) && p.containerPort > 0 && p.containerPort < 65536);
          if (p.name) assert.ok(p.name.length <= 15 && DNS1123.test(p.name), `port name ${p.name}`);
        }
        for (const r of ['cpu', 'memory']) {
          assert.ok(c.resources?.requests?.[r] !== undefined && c.resources?.limits?.[r] !== undefined, `${c.name}: ${r} request and limit`);
          assert.ok(quantity(c.resources.requests[r]) <= quantity(c.resources.limits[r]), `${c.name}: ${r} request ≤ limit`);
        }
        for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
          const port = c[probe]?.httpGet?.port ?? c[probe]?.tcpSocket?.port;
          if (port === undefined) continue;
          assert.ok(c.ports.some((p: Obj) => p.name === port || p.containerPort === port), `${c.name} ${probe}: port ${port} is not a containerPort`);
        }
      }
    }
  });

  test('the proxy: 3 replicas, probes on /healthz and /readyz, non-root, grace period past the shutdown timeout', () => {
    const d = proxyDeployment();
    assert.equal(d.spec.replicas, 3);
    const pod = d.spec.template.spec;
    const c = pod.containers.find((x: Obj) => x.name === 'soci-proxy');
    assert.ok(c);
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.equal(c.startupProbe.httpGet.path, '/healthz');
    assert.ok(pod.securityContext.runAsNonRoot === true && pod.securityContext.runAsUser !== 0);
    assert.ok(pod.terminationGracePeriodSeconds > shutdownTimeout(), 'terminationGracePeriodSeconds must exceed SOCI_PROXY_SHUTDOWN_TIMEOUT');
    // The container listens where the probes and the Service look.
    const listen = c.args[c.args.indexOf('--listen') + 1] as string;
    assert.match(listen, /^0\.0\.0\.0:\d+$/);
    assert.ok(c.ports.some((p: Obj) => p.containerPort === Number(listen.split(':')[1])), `--listen ${listen} is a containerPort`);
    const mount = c.volumeMounts.find((m: Obj) => m.mountPath === '/var/lib/soci-proxy');
    assert.ok(mount && pod.volumes.some((v: Obj) => v.name === mount.name), 'the cache dir is a volume');
  });

  test('every SOCI_PROXY_* name and value (Deployment env, ConfigMap data) is a valid setting', () => {
    let n = 0;
    for (const cm of of('ConfigMap')) {
      for (const [k, v] of Object.entries(cm.data ?? {})) {
        if (k.startsWith('SOCI_PROXY_')) {
          checkSetting(k, v, `ConfigMap ${cm.metadata.name}`);
          n++;
        }
      }
    }
    for (const d of of('Deployment')) {
      for (const c of d.spec.template.spec.containers) {
        for (const e of c.env ?? []) {
          if (!String(e.name).startsWith('SOCI_PROXY_')) continue;
          checkSetting(e.name, e.value, `Deployment ${d.metadata.name} env`);
          n++;
        }
        for (const from of c.envFrom ?? []) {
          if (from.configMapRef) assert.ok(of('ConfigMap').some((cm) => cm.metadata.name === from.configMapRef.name), `envFrom ConfigMap ${from.configMapRef.name} exists`);
        }
      }
    }
    assert.ok(n >= 5, `only ${n} settings found`);
    const cm = of('ConfigMap').find((x) => x.metadata.name === 'soci-proxy');
    assert.match(String(cm?.data?.SOCI_PROXY_REDIS), /^redis:\/\/soci-proxy-redis:6379$/, 'Redis URL names the Redis Service');
    assert.ok(of('Service').some((s) => s.metadata.name === 'soci-proxy-redis' && s.spec.ports.some((p: Obj) => p.port === 6379)));
  });

  test('Services select a Deployment and target one of its containerPorts', () => {
    for (const s of of('Service')) {
      const d = of('Deployment').find((x) => matches(s.spec.selector, x.spec.template.metadata.labels));
      assert.ok(d, `Service ${s.metadata.name} selects no Deployment`);
      const ports = d.spec.template.spec.containers.flatMap((c: Obj) => c.ports);
      for (const p of s.spec.ports) {
        assert.ok(Number.isInteger(p.port));
        const target = p.targetPort ?? p.port;
        assert.ok(ports.some((cp: Obj) => cp.name === target || cp.containerPort === target), `Service ${s.metadata.name}: targetPort ${target} is not a containerPort of ${d.metadata.name}`);
      }
    }
  });

  test('PodDisruptionBudget selects the proxy and leaves room for a disruption', () => {
    const d = proxyDeployment();
    const pdb = of('PodDisruptionBudget')[0];
    assert.ok(pdb);
    assert.ok(matches(pdb.spec.selector.matchLabels, d.spec.template.metadata.labels));
    assert.ok(Number.isInteger(pdb.spec.minAvailable) && pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < d.spec.replicas);
  });
});

describe('deploy/compose.yaml', { skip: YAML_SKIP }, () => {
  test('proxy, Redis and a profiled registry; health checks; valid settings; volumes declared', () => {
    const [c] = parseYaml(join(DEPLOY, 'compose.yaml'));
    assert.ok(c);
    const { proxy, redis, registry } = c.services;
    assert.ok(proxy && redis && registry, 'services proxy, redis, registry');
    for (const [name, s] of Object.entries(c.services as Record<string, Obj>)) {
      assert.ok(s.image || s.build, `${name}: image or build`);
      assert.ok(Array.isArray(s.healthcheck?.test) && ['CMD', 'CMD-SHELL'].includes(s.healthcheck.test[0]), `${name}: healthcheck`);
      for (const v of s.volumes ?? []) {
        const src = String(v).split(':')[0] as string;
        if (!src.startsWith('.') && !src.startsWith('/')) assert.ok(src in (c.volumes ?? {}), `${name}: volume ${src} declared`);
      }
    }
    assert.deepEqual(registry.profiles, ['local-registry'], 'the registry only under its profile');
    assert.equal(proxy.profiles, undefined);
    assert.equal(redis.profiles, undefined);
    // The build points at the repo root and this Dockerfile.
    assert.equal(resolve(DEPLOY, proxy.build.context), ROOT);
    assert.ok(existsSync(join(ROOT, proxy.build.dockerfile)));
    assert.ok(proxy.ports.some((p: string) => String(p).endsWith(':5000')), 'publishes container port 5000');
    assert.match(proxy.healthcheck.test.join(' '), /\/(healthz|readyz)/);
    assert.equal(proxy.depends_on.redis.condition, 'service_healthy');
    for (const [k, v] of Object.entries(proxy.environment as Record<string, string>)) checkSetting(k, v, 'compose proxy environment');
    assert.match(proxy.environment.SOCI_PROXY_REDIS, /^redis:\/\/redis:6379$/);
    assert.ok(proxy.volumes.some((v: string) => String(v).endsWith(':/var/lib/soci-proxy')));
    const grace = /^(\d+)s$/.exec(proxy.stop_grace_period);
    assert.ok(grace && Number(grace[1]) > Number(proxy.environment.SOCI_PROXY_SHUTDOWN_TIMEOUT), 'stop_grace_period past the shutdown timeout');
  });
});

describe('deploy/containerd/hosts.toml and deploy/Dockerfile (static)', () => {
  test('hosts.toml parses and sends pull/resolve to the proxy', () => {
    const t = parseToml(join(DEPLOY, 'containerd', 'hosts.toml'));
    assert.match(t.server, /^https:\/\//);
    const hosts = Object.entries(t.host as Record<string, Obj>);
    assert.equal(hosts.length, 1);
    const [url, h] = hosts[0] as [string, Obj];
    assert.match(url, /^https?:\/\/[^/]+:5000$/);
    assert.deepEqual([...h.capabilities].sort(), ['pull', 'resolve']);
  });

  test('Dockerfile: overridable slim Node 20 base, non-root, port, health check, volume, serve command', () => {
    const text = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
    assert.match(text, /^ARG BASE_IMAGE=node:20-bookworm-slim$/m);
    assert.equal(text.match(/^FROM \$\{BASE_IMAGE\}/gm)?.length, 2, 'both stages on BASE_IMAGE');
    assert.match(text, /apt-get install .*python3 make g\+\+/);
    const user = /^USER (\S+)$/m.exec(text)?.[1];
    assert.ok(user && !/^(0|root)(:|$)/.test(user), `runs as non-root, got ${user}`);
    assert.match(text, /^EXPOSE 5000$/m);
    assert.match(text, /^VOLUME \/var\/lib\/soci-proxy$/m);
    assert.match(text, /^HEALTHCHECK .*CMD \["node", "-e", ".*\/healthz/m);
    assert.match(text, /^ENTRYPOINT \["soci-proxy"\]$/m);
    assert.match(text, /^CMD \["serve"\]$/m);
    assert.match(text, /SOCI_PROXY_LISTEN=0\.0\.0\.0:5000/);
    assert.match(text, /SOCI_PROXY_CACHE_DIR=\/var\/lib\/soci-proxy/);
    // Every COPY from the context exists and is not excluded by .dockerignore.
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const m of text.matchAll(/^COPY (?!--from)(.+) (\S+)$/gm)) {
      for (const src of (m[1] as string).split(/\s+/)) {
        assert.ok(existsSync(join(ROOT, src)), `COPY ${src}: missing`);
        assert.ok(!ignore.includes(src), `COPY ${src}: excluded by .dockerignore`);
      }
    }
  });
});

// ---- the image: buildah build on an offline base, podman run ----

const BASE_TAG = 'localhost/node:20-bookworm-slim';
const IMAGE_TAG = 'localhost/soci-proxy:deploy-test';

function imageSkipReason(): string | false {
  if (process.env.SOCI_PROXY_SKIP_IMAGE_TEST) return 'SOCI_PROXY_SKIP_IMAGE_TEST is set';
  for (const tool of ['buildah', 'podman']) {
    const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (r.status !== 0) return `${tool} not installed or not runnable (${r.error?.message ?? r.stderr.trim()}); apt-get install ${tool} (scripts/test-deps.sh)`;
  }
  const ping = spawnSync('npm', ['ping', '--fetch-timeout=10000', '--fetch-retries=0'], { encoding: 'utf8', timeout: 20_000 });
  if (ping.status !== 0) return `the npm registry is unreachable (npm ping: ${(ping.stderr || ping.error?.message || '').trim().split('\n').pop()}); the image build runs npm ci`;
  return false;
}

/** The host's node, npm, a shell and a few coreutils as `localhost/node:20-bookworm-slim` (Docker Hub is unreachable here). */
async function offlineBase(dir: string): Promise<void> {
  const rootfs = join(dir, 'rootfs');
  const node = process.execPath;
  const npmRoot = resolve(dirname(node), '..', 'lib', 'node_modules', 'npm');
  assert.ok(existsSync(npmRoot), `npm not found at ${npmRoot}`);
  const bins = ['dash', 'env', 'dirname', 'mkdir', 'ln', 'chmod', 'rm', 'cp', 'cat'].map((b) => {
    const w = spawnSync('sh', ['-c', `command -v ${b}`], { encoding: 'utf8' }).stdout.trim();
    assert.ok(w, `${b} not found`);
    return w;
  });
  await hostBinariesRootfs([node, ...bins], rootfs, [npmRoot]);
  const bin = join(rootfs, 'usr', 'bin');
  if (!existsSync(join(bin, 'node'))) copyFileSync(node, join(bin, 'node'));
  symlinkSync('dash', join(bin, 'sh'));
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(bin, 'npm'));
  mkdirSync(join(rootfs, 'root'), { recursive: true });
  writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n');
  writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nnode:x:1000:\n');
  // This machine reaches the npm registry through a TLS-inspecting proxy: trust the host's CA bundle.
  const bundle = '/etc/ssl/certs/ca-certificates.crt';
  const env = ['--env', 'PATH=/usr/local/bin:/usr/bin:/bin'];
  if (existsSync(bundle)) {
    mkdirSync(join(rootfs, 'etc', 'ssl', 'certs'), { recursive: true });
    copyFileSync(bundle, join(rootfs, 'etc', 'ssl', 'certs', 'ca-certificates.crt'));
    env.push('--env', `NODE_EXTRA_CA_CERTS=${bundle}`);
  }
  const ctr = (await runCommand('buildah', ['from', 'scratch'])).stdout.trim();
  try {
    await runCommand('buildah', ['copy', ctr, `${rootfs}/`, '/']);
    await runCommand('buildah', ['config', ...env, '--cmd', 'node', ctr]);
    await runCommand('buildah', ['commit', '-q', ctr, BASE_TAG]);
  } finally {
    await runCommand('buildah', ['rm', ctr], { check: false });
  }
}

describe('deploy/Dockerfile image (buildah build, podman run)', { skip: imageSkipReason() }, () => {
  const dir = tempDir('deploy-image');
  after(async () => {
    await runCommand('podman', ['rm', '-f', '--ignore', 'soci-proxy-deploy-test'], { check: false });
    await runCommand('buildah', ['rmi', '-f', IMAGE_TAG, BASE_TAG], { check: false });
    dir.remove();
  });

  test('builds offline-based, runs as uid 1000, answers /healthz, serves a blob byte for byte', { timeout: 600_000 }, async () => {
    await offlineBase(dir.path);
    const build = await runCommand('buildah', ['bud', '--pull=never', '--format', 'docker', '--isolation', 'oci', '--network', 'host', '--layers=false',
      '--build-arg', `BASE_IMAGE=${BASE_TAG}`, '-f', 'deploy/Dockerfile', '-t', IMAGE_TAG, '.'], { cwd: ROOT, check: false, timeoutMs: 540_000 });
    assert.equal(build.code, 0, `buildah bud failed:\n${(build.stderr + build.stdout).split('\n').slice(-25).join('\n')}`);
    const cfg = JSON.parse((await runCommand('buildah', ['inspect', '--type', 'image', IMAGE_TAG])).stdout) as Obj;
    const oci = cfg.OCIv1.config as Obj;
    assert.equal(oci.User, '1000:1000');
    assert.deepEqual(oci.Entrypoint, ['soci-proxy']);
    assert.deepEqual(oci.Cmd, ['serve']);
    assert.ok(oci.Env.includes('SOCI_PROXY_LISTEN=0.0.0.0:5000') && oci.Env.includes('SOCI_PROXY_CACHE_DIR=/var/lib/soci-proxy'), oci.Env.join(' '));
    assert.ok('5000/tcp' in oci.ExposedPorts);
    assert.ok('/var/lib/soci-proxy' in oci.Volumes);
    assert.match(JSON.stringify(cfg.Docker?.config?.Healthcheck ?? {}), /healthz/);

    const registry = await startRegistry();
    try {
      const image = await smallImage();
      await pushImage(image, { registry: registry.url, repo: 'lib/small', tag: 'v1' });
      const port = await freePort();
      // Host network: the container reaches the test registry on 127.0.0.1; the image's own CMD is
      // kept, only SOCI_PROXY_LISTEN moves off the port the host may already use.
      // podman's default RLIMIT_NOFILE/NPROC are above this machine's hard limits (runc: "error setting
      // rlimit type 7: operation not permitted"), so pass the host's own. Its HEALTHCHECK timers need
      // systemd, absent here: the check is run by hand below with `podman exec` instead.
      const limits = readFileSync('/proc/self/limits', 'utf8');
      const limit = (name: string): string => new RegExp(`^Max ${name}\\s+\\S+\\s+(\\d+)`, 'm').exec(limits)?.[1] ?? '4096';
      // (Setting NPROC to the full hard limit is refused too; 4096 is plenty for one node process.)
      const [nofile, nproc] = [limit('open files'), String(Math.min(4096, Number(limit('processes'))))];
      await runCommand('podman', ['run', '-d', '--name', 'soci-proxy-deploy-test', '--network', 'host', '--no-healthcheck',
        '--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`,
        '-e', `SOCI_PROXY_UPSTREAM=${registry.url}`, '-e', 'SOCI_PROXY_INDEX_MODE=off', '-e', `SOCI_PROXY_LISTEN=127.0.0.1:${port}`,
        IMAGE_TAG]);
      const deadline = Date.now() + 30_000;
      let ok = false;
      while (!ok && Date.now() < deadline) {
        ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
        if (!ok) await new Promise((r) => setTimeout(r, 250));
      }
      const logs = async (): Promise<string> => (await runCommand('podman', ['logs', 'soci-proxy-deploy-test'], { check: false })).stderr;
      assert.ok(ok, `no /healthz within 30 s:\n${await logs()}`);
      // The image's own HEALTHCHECK command, run inside the container.
      const hc = cfg.Docker.config.Healthcheck.Test as string[];
      assert.equal(hc[0], 'CMD');
      assert.equal((await runCommand('podman', ['exec', 'soci-proxy-deploy-test', ...hc.slice(1)], { check: false })).code, 0, 'HEALTHCHECK passes');
      const top = await runCommand('podman', ['exec', 'soci-proxy-deploy-test', 'node', '-e', 'console.log(process.getuid(), require("fs").statSync("/var/lib/soci-proxy").uid)']);
      assert.equal(top.stdout.trim(), '1000 1000', 'runs as uid 1000 and owns its cache volume');
      const m = JSON.parse((await runCommand('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/lib/small:v1`])).stdout) as Obj;
      const digest = m.layers[0].digest as string;
      const r = await fetch(`http://127.0.0.1:${port}/v2/lib/small/blobs/${digest}`);
      const body = new Uint8Array(await r.arrayBuffer());
      assert.equal(r.status, 200);
      assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, digest);
      const stop = await runCommand('podman', ['stop', '-t', '20', 'soci-proxy-deploy-test']);
      assert.equal(stop.code, 0);
      const exit = (await runCommand('podman', ['inspect', '--format', '{{.State.ExitCode}}', 'soci-proxy-deploy-test'])).stdout.trim();
      assert.equal(exit, '0', `graceful exit on SIGTERM inside the container:\n${await logs()}`);
    } finally {
      await registry.stop();
    }
  });
});
