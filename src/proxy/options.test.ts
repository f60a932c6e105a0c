import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SERVE_OPTIONS, optionsMarkdown, parseOptionValue, envName, configKey } from './options.js';
import { resolveSettings, upstreamsFromSettings } from './main.js';

test('the README configuration reference is the schema (cannot drift)', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const m = /<!-- options:begin -->\n([\s\S]*?)\n<!-- options:end -->/.exec(readme);
  assert.ok(m, 'README has the options block');
  assert.equal(m[1], optionsMarkdown());
});

test('values parse with units and bad values name the setting', () => {
  const spec = SERVE_OPTIONS.find((o) => o.flag === 'span-size')!;
  assert.equal(parseOptionValue(spec, '4MiB', 'flag'), 4 * 1024 * 1024);
  assert.equal(parseOptionValue(spec, '65536', 'flag'), 65536);
  assert.throws(() => parseOptionValue(spec, 'four', 'flag'), /span-size/);
  const mode = SERVE_OPTIONS.find((o) => o.flag === 'index-mode')!;
  assert.throws(() => parseOptionValue(mode, 'sometimes', 'environment'), /index-mode.*wait, background, off/);
  assert.equal(envName('min-layer-size'), 'SOCI_PROXY_MIN_LAYER_SIZE');
  assert.equal(configKey('min-layer-size'), 'minLayerSize');
});

test('flags beat the environment, which beats defaults', () => {
  const s = resolveSettings(['--span-size', '1MiB'], { SOCI_PROXY_SPAN_SIZE: '2MiB', SOCI_PROXY_INDEX_MODE: 'background', SOCI_PROXY_UPSTREAM: 'http://127.0.0.1:5000' });
  assert.equal(s['span-size'], 1024 * 1024);
  assert.equal(s['index-mode'], 'background');
  assert.equal(s['min-layer-size'], 10 * 1024 * 1024);
  const ups = upstreamsFromSettings(s);
  assert.equal(ups.defaultUpstream, '127.0.0.1:5000');
  assert.throws(() => resolveSettings(['--index-mode', 'bogus'], {}), /index-mode/);
  assert.throws(() => upstreamsFromSettings(resolveSettings([], {})), /--upstream/);
});

test('named upstreams and Docker Hub naming', () => {
  const ups = upstreamsFromSettings(resolveSettings(['--upstream', 'docker.io=https://registry-1.docker.io', '--upstream', 'https://ghcr.io'], {}));
  assert.deepEqual(ups.upstreams.map((u) => u.name), ['docker.io', 'ghcr.io']);
  assert.equal(ups.defaultUpstream, 'ghcr.io');
  assert.throws(() => upstreamsFromSettings(resolveSettings(['--upstream', 'ftp://x'], {})), /http/);
});
