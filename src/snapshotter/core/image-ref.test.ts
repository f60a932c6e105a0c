import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatImageRef, parseImageRef } from './registry-client.js';
import { pickPlatform } from './image-resolver.js';

test('image references: full, with a default host, digests, ports, bad names', () => {
  assert.deepEqual(parseImageRef('127.0.0.1:5000/test/python:3.11'), { host: '127.0.0.1:5000', repo: 'test/python', reference: '3.11' });
  assert.deepEqual(parseImageRef('test/python', 'http://127.0.0.1:5000/'), { host: '127.0.0.1:5000', repo: 'test/python', reference: 'latest' });
  const d = `sha256:${'a'.repeat(64)}`;
  assert.deepEqual(parseImageRef(`localhost/x@${d}`), { host: 'localhost', repo: 'x', reference: d });
  assert.equal(formatImageRef(parseImageRef(`reg.example/a/b@${d}`)), `reg.example/a/b@${d}`);
  assert.equal(formatImageRef(parseImageRef('reg.example/a/b:t')), 'reg.example/a/b:t');
  assert.throws(() => parseImageRef('test/python:1'), (e: { code?: string }) => e.code === 'NAME_INVALID');
  assert.throws(() => parseImageRef('reg.example/Bad:1'), (e: { code?: string }) => e.code === 'NAME_INVALID');
});

test('platform pick skips artifacts and prefers the variant', () => {
  const m = (digest: string, architecture: string, variant?: string, artifactType?: string) => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 1,
    platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) }, ...(artifactType ? { artifactType } : {}),
  });
  const list = [m('a', 'arm64', 'v8'), m('s', 'amd64', undefined, 'application/vnd.amazon.soci.index.v2+json'), m('b', 'amd64'), m('c', 'arm64', 'v9')];
  assert.equal(pickPlatform(list, { os: 'linux', architecture: 'amd64' })?.digest, 'b');
  assert.equal(pickPlatform(list, { os: 'linux', architecture: 'arm64', variant: 'v9' })?.digest, 'c');
  assert.equal(pickPlatform(list, { os: 'windows', architecture: 'amd64' }), undefined);
});
