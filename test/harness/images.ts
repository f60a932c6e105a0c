/**
 * Test images built offline into OCI layouts, and pushed to a test registry with skopeo. `buildImage`
 * writes every blob itself (tar-writer.ts, Node's gzip) so layers can be gzip, multi-member gzip,
 * uncompressed, or carry a PAX global header, and their bytes are reproducible; `buildImageWithUmoci`
 * goes through umoci (whose manifests have no top-level mediaType, test-environment.md §3.3) for a
 * realistic third-party shape. `buildIndex` writes a multi-platform image index. Built images keep every
 * blob's bytes so tests can compare what the proxy or snapshotter served byte for byte.
 */
import { gzipSync, gunzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/media-types.js';
import type { Descriptor, Manifest, Platform } from '../../src/oci/types.js';
import { writeTar, type TarEntry } from './tar-writer.js';
import { initLayout, readBlob, resolveTag, tagLayout, writeBlob, writeIndex } from './oci-layout.js';
import { runCommand, type RunResult } from './process.js';
import { tempDir } from './cleanup.js';
import { pushExact } from './push.js';

export type FileSpec =
  | string
  | Uint8Array
  | { content: string | Uint8Array; mode?: number; uid?: number; gid?: number; mtime?: number }
  | { symlink: string }
  | { hardlink: string }
  | { dir: true; mode?: number };

/** gzip: one member (Node zlib); gzip-multi: the tar split in two gzip members (like pigz -i / eStargz). */
export type Compression = 'gzip' | 'gzip-multi' | 'uncompressed';

export type LayerSpec = (
  | { files: Record<string, FileSpec>; paxGlobal?: Record<string, string>; implicitDirs?: boolean; compression?: Compression }
  | { dir: string; compression?: Compression }
  | { tar: Uint8Array; compression?: Compression }
  | { tarGz: Uint8Array }
) & { annotations?: Record<string, string> };

export interface ConfigSpec {
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  workingDir?: string;
  arch?: string;
  os?: string;
  variant?: string;
}

export interface BuiltLayer {
  descriptor: Descriptor;
  /** sha256 of the uncompressed tar. */
  diffId: string;
  /** The uncompressed tar. */
  tar: Buffer;
  /** The blob as stored and pushed. */
  blob: Buffer;
}

export interface BuiltImage {
  layout: string;
  /** Tag inside the layout, if tagged. */
  tag?: string;
  /** `oci:<layout>:<tag>` for skopeo. */
  ref: string;
  manifest: Manifest;
  manifestBytes: Buffer;
  descriptor: Descriptor;
  config: Record<string, unknown>;
  configBytes: Buffer;
  layers: BuiltLayer[];
  platform: Platform;
}

export interface BuiltIndex {
  layout: string;
  tag: string;
  ref: string;
  descriptor: Descriptor;
  indexBytes: Buffer;
  images: BuiltImage[];
}

function fileEntries(files: Record<string, FileSpec>, implicitDirs: boolean): TarEntry[] {
  const out: TarEntry[] = [];
  const seen = new Set<string>();
  const addParents = (path: string): void => {
    const parts = path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!seen.has(d)) {
        seen.add(d);
        out.push({ type: 'dir', path: d });
      }
    }
  };
  for (const [rawPath, spec] of Object.entries(files)) {
    const path = rawPath.replace(/^\/+/, '').replace(/\/+$/, '');
    if (implicitDirs) addParents(path);
    seen.add(path);
    if (typeof spec === 'string' || spec instanceof Uint8Array) out.push({ type: 'file', path, content: Buffer.from(spec) });
    else if ('symlink' in spec) out.push({ type: 'symlink', path, target: spec.symlink });
    else if ('hardlink' in spec) out.push({ type: 'hardlink', path, target: spec.hardlink.replace(/^\/+/, '') });
    else if ('dir' in spec) out.push({ type: 'dir', path, mode: spec.mode });
    else out.push({ type: 'file', path, content: Buffer.from(spec.content), mode: spec.mode, uid: spec.uid, gid: spec.gid, mtime: spec.mtime });
  }
  return out;
}

async function tarOfDir(dir: string): Promise<Buffer> {
  const tmp = tempDir('tar');
  try {
    const file = join(tmp.path, 'layer.tar');
    await runCommand('tar', ['-C', dir, '--sort=name', '--numeric-owner', '--format=pax', '-cf', file, '.']);
    return readFileSync(file);
  } finally {
    tmp.remove();
  }
}

function compress(tar: Buffer, c: Compression): { blob: Buffer; mediaType: string } {
  if (c === 'uncompressed') return { blob: tar, mediaType: MediaType.ociLayerTar };
  if (c === 'gzip') return { blob: gzipSync(tar), mediaType: MediaType.ociLayerGzip };
  // two members, split on a 512-byte boundary in the middle
  const cut = Math.floor(tar.length / 2 / 512) * 512;
  return { blob: Buffer.concat([gzipSync(tar.subarray(0, cut)), gzipSync(tar.subarray(cut))]), mediaType: MediaType.ociLayerGzip };
}

/** Turns one layer spec into its tar and blob bytes. */
export async function buildLayer(spec: LayerSpec): Promise<Omit<BuiltLayer, 'descriptor'> & { mediaType: string }> {
  let tar: Buffer;
  if ('tarGz' in spec) {
    tar = gunzipSync(spec.tarGz);
    return { tar, blob: Buffer.from(spec.tarGz), mediaType: MediaType.ociLayerGzip, diffId: sha256(tar) };
  }
  if ('files' in spec) tar = writeTar(fileEntries(spec.files, spec.implicitDirs ?? true), { paxGlobal: spec.paxGlobal });
  else if ('dir' in spec) tar = await tarOfDir(spec.dir);
  else tar = Buffer.from(spec.tar);
  const { blob, mediaType } = compress(tar, spec.compression ?? 'gzip');
  return { tar, blob, mediaType, diffId: sha256(tar) };
}

export interface BuildImageOptions {
  /** Layout dir; a fresh temp dir (removed at exit) by default. */
  layout?: string;
  /** Tag inside the layout; leave out for an image that only an index references. */
  tag?: string;
  layers: LayerSpec[];
  config?: ConfigSpec;
  /** Leave out the manifest's top-level mediaType, as umoci does. */
  omitManifestMediaType?: boolean;
  annotations?: Record<string, string>;
}

/** Writes an image (layers, config, manifest) into an OCI layout. */
export async function buildImage(opts: BuildImageOptions): Promise<BuiltImage> {
  const layout = opts.layout ?? tempDir('image').path;
  initLayout(layout);
  const layers: BuiltLayer[] = [];
  for (const spec of opts.layers) {
    const l = await buildLayer(spec);
    const descriptor = writeBlob(layout, l.blob, l.mediaType);
    if (spec.annotations) descriptor.annotations = spec.annotations;
    layers.push({ descriptor, diffId: l.diffId, tar: l.tar, blob: l.blob });
  }
  const c = opts.config ?? {};
  const platform: Platform = { architecture: c.arch ?? 'amd64', os: c.os ?? 'linux' };
  if (c.variant) platform.variant = c.variant;
  const inner: Record<string, unknown> = { Env: c.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] };
  if (c.entrypoint) inner.Entrypoint = c.entrypoint;
  if (c.cmd) inner.Cmd = c.cmd;
  if (c.workingDir) inner.WorkingDir = c.workingDir;
  const config: Record<string, unknown> = {
    created: '1970-01-01T00:00:00Z',
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: platform.os,
    config: inner,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created: '1970-01-01T00:00:00Z', created_by: 'soci-proxy test harness' })),
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDesc = writeBlob(layout, configBytes, MediaType.ociConfig);
  const manifest: Manifest = { schemaVersion: 2 } as Manifest;
  if (!opts.omitManifestMediaType) manifest.mediaType = MediaType.ociManifest;
  manifest.config = configDesc;
  manifest.layers = layers.map((l) => l.descriptor);
  if (opts.annotations) manifest.annotations = opts.annotations;
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const descriptor = writeBlob(layout, manifestBytes, MediaType.ociManifest);
  if (opts.tag) tagLayout(layout, descriptor, opts.tag);
  return {
    layout,
    tag: opts.tag,
    ref: `oci:${layout}:${opts.tag ?? ''}`,
    manifest,
    manifestBytes,
    descriptor,
    config,
    configBytes,
    layers,
    platform,
  };
}

/** Writes an image index over images already in `layout` and tags it. */
export function buildIndex(opts: { layout: string; tag: string; images: BuiltImage[]; annotations?: Record<string, string> }): BuiltIndex {
  const manifests = opts.images.map((img) => ({ ...img.descriptor, platform: img.platform }));
  const { descriptor, bytes } = writeIndex(opts.layout, manifests, opts.annotations);
  tagLayout(opts.layout, descriptor, opts.tag);
  return { layout: opts.layout, tag: opts.tag, ref: `oci:${opts.layout}:${opts.tag}`, descriptor, indexBytes: bytes, images: opts.images };
}

/** Builds an image through umoci (init/new/insert/config): one gzip layer per dir, umoci's own manifest shape. */
export async function buildImageWithUmoci(opts: { layout?: string; tag: string; dirs: string[]; config?: ConfigSpec }): Promise<BuiltImage> {
  const layout = opts.layout ?? join(tempDir('umoci').path, 'oci');
  const image = `${layout}:${opts.tag}`;
  await runCommand('umoci', ['init', '--layout', layout]);
  await runCommand('umoci', ['new', '--image', image]);
  for (const d of opts.dirs) await runCommand('umoci', ['insert', '--rootless', '--no-history', '--image', image, d, '/']);
  const c = opts.config ?? {};
  const args = ['config', '--no-history', '--image', image, '--architecture', c.arch ?? 'amd64', '--os', c.os ?? 'linux'];
  for (const e of c.env ?? []) args.push('--config.env', e);
  for (const x of c.cmd ?? []) args.push(`--config.cmd=${x}`);
  for (const x of c.entrypoint ?? []) args.push(`--config.entrypoint=${x}`);
  await runCommand('umoci', args);
  await runCommand('umoci', ['gc', '--layout', layout]);
  const descriptor = resolveTag(layout, opts.tag);
  if (!descriptor) throw new Error(`umoci: tag ${opts.tag} not in ${layout}`);
  return loadImage(layout, opts.tag, descriptor);
}

/** Reads an image manifest (and its blobs) back from a layout. */
export function loadImage(layout: string, tag: string | undefined, descriptor: Descriptor): BuiltImage {
  const manifestBytes = readBlob(layout, descriptor.digest);
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest;
  const configBytes = readBlob(layout, manifest.config.digest);
  const config = JSON.parse(configBytes.toString('utf8')) as Record<string, unknown>;
  const diffIds = ((config.rootfs as { diff_ids?: string[] } | undefined)?.diff_ids ?? []);
  const layers = manifest.layers.map((d, i) => {
    const blob = readBlob(layout, d.digest);
    const tar = d.mediaType.endsWith('gzip') ? gunzipSync(blob) : blob;
    return { descriptor: d, diffId: diffIds[i] ?? sha256(tar), tar, blob };
  });
  const platform: Platform = { architecture: String(config.architecture), os: String(config.os) };
  if (typeof config.variant === 'string') platform.variant = config.variant;
  return { layout, tag, ref: `oci:${layout}:${tag ?? ''}`, manifest, manifestBytes, descriptor: { ...descriptor, annotations: undefined }, config, configBytes, layers, platform };
}

export interface PushOptions {
  /** `host:port/repo:tag` (no scheme). */
  dest: string;
  /** Push every manifest of an index (skopeo --all). */
  all?: boolean;
  /** skopeo --format: oci or v2s2 (Docker media types). */
  format?: 'oci' | 'v2s2';
  /** Recompress layers on the way (--dest-compress-format). */
  compressFormat?: 'gzip' | 'zstd';
  /** Fail instead of changing any digest (skopeo --preserve-digests). */
  preserveDigests?: boolean;
  /** user:password for the destination. */
  creds?: string;
}

/**
 * Pushes `oci:<layout>:<tag>` to a plain-http registry with skopeo copy. Note: skopeo gzips uncompressed
 * layers on the way; use `pushImage` (push.ts) when the bytes must stay as built.
 */
export function skopeoPush(image: { ref: string }, opts: PushOptions): Promise<RunResult> {
  const args = ['copy', '--quiet', '--dest-tls-verify=false'];
  if (opts.all) args.push('--all');
  if (opts.format) args.push('--format', opts.format);
  if (opts.compressFormat) args.push('--dest-compress', '--dest-compress-format', opts.compressFormat);
  if (opts.preserveDigests) args.push('--preserve-digests');
  if (opts.creds) args.push('--dest-creds', opts.creds);
  args.push(image.ref, `docker://${opts.dest}`);
  return runCommand('skopeo', args);
}

/** Pushes a built image or index byte for byte (see push.ts) to `registry` (http://host:port) as repo:tag. */
export async function pushImage(image: { layout: string; tag?: string }, o: { registry: string; repo: string; tag?: string; authorization?: string }): Promise<void> {
  if (!image.tag) throw new Error('pushImage: the image has no tag in its layout');
  await pushExact(image.layout, image.tag, o);
}

/** `skopeo inspect --raw` of a plain-http registry reference; returns the raw manifest or index bytes. */
export async function inspectRaw(ref: string, creds?: string): Promise<string> {
  const args = ['inspect', '--raw', '--tls-verify=false'];
  if (creds) args.push('--creds', creds);
  args.push(`docker://${ref}`);
  return (await runCommand('skopeo', args)).stdout;
}
