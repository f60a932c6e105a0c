/**
 * Go-compatible JSON for image-spec v1.1.1 documents (../shared/spec/soci-format.md §1.3). `marshal*`
 * writes exactly the bytes Go's `json.Marshal` writes for `ocispec.Manifest` / `Index` / `Descriptor`:
 * struct key order, no whitespace, `omitempty` exactly as image-spec's struct tags (Descriptor's
 * mediaType/digest/size and Platform's architecture/os always written; Manifest.layers and
 * Index.manifests always written, `null` only when the field is absent from the model, `[]` for an empty
 * array, as Go writes a nil vs. an empty non-nil slice), map keys sorted in UTF-8 byte order, `data` as
 * canonical padded base64, and Go's HTML-safe string escaping (`<>&` U+2028 U+2029 as `\uXXXX`, other
 * control characters as `\u00xx` except `\n \r \t`, and `\b \f` as short escapes from Go 1.22 on, which
 * is what current soci releases are built with; `goShortEscapes: false` gives Go ≤ 1.21 output). Lone
 * UTF-16 surrogates are written as U+FFFD, which is what Go holds after decoding such a `\ud800` escape.
 * `parse*` decodes registry bytes the way Go would (unknown fields dropped, `null` as absent, field names
 * matched case-insensitively) and validates them, throwing `OciError('MANIFEST_INVALID')`.
 */
import { parseDigest } from './digest.js';
import { OciError } from './errors.js';
import { isIndexType, isManifestType } from './media-types.js';
import { JsonNumber, JsonObject, readJson, wellFormed, type JsonValue } from './strict-json.js';
import type { Descriptor, Index, Manifest, Platform } from './types.js';

export interface GoJsonOptions {
  /** Write `\b`/`\f` as short escapes (Go ≥ 1.22, the default) instead of `\u0008`/`\u000c`. */
  goShortEscapes?: boolean;
}

export interface ParseOptions {
  /** Largest document accepted, in bytes (default 4 MiB, oras-go's manifest limit). */
  maxBytes?: number;
  /** Most entries in `layers` / `manifests` (default 10000). */
  maxDescriptors?: number;
  /** Most keys in one annotations map (default 10000). */
  maxAnnotations?: number;
}

// ---- marshal ----------------------------------------------------------------------------------------

const encoder = new TextEncoder();

function bad(msg: string): never {
  throw new OciError('MANIFEST_INVALID', msg);
}

function quote(s: string, short: boolean): string {
  let out = '"';
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | undefined;
    if (c < 0x20) {
      if (c === 0x0a) esc = '\\n';
      else if (c === 0x0d) esc = '\\r';
      else if (c === 0x09) esc = '\\t';
      else if (short && c === 0x08) esc = '\\b';
      else if (short && c === 0x0c) esc = '\\f';
      else esc = `\\u00${c.toString(16).padStart(2, '0')}`;
    } else if (c === 0x22) esc = '\\"';
    else if (c === 0x5c) esc = '\\\\';
    else if (c === 0x3c || c === 0x3e || c === 0x26 || c === 0x2028 || c === 0x2029) {
      esc = `\\u${c.toString(16).padStart(4, '0')}`;
    }
    if (esc !== undefined) {
      out += s.slice(run, i) + esc;
      run = i + 1;
    }
  }
  // Lone surrogates are left in place; TextEncoder writes them as U+FFFD.
  return `${out}${s.slice(run)}"`;
}

/** Rank a UTF-16 code unit so that comparing ranks of well-formed strings gives code point (= UTF-8 byte) order. */
function rank(u: number): number {
  if (u >= 0xd800 && u <= 0xdfff) return u + 0x2000;
  if (u >= 0xe000) return u - 0x800;
  return u;
}

/** Compare two well-formed strings in UTF-8 byte order, as Go sorts map keys. */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rank(x) - rank(y);
  }
  return a.length - b.length;
}

function int(n: unknown, where: string): string {
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) bad(`${where}: not a safe integer`);
  return String(n);
}

function stringMap(m: Record<string, string>, short: boolean, where: string): string {
  const keys = new Map<string, string>();
  for (const [k, v] of Object.entries(m)) {
    const key = wellFormed(k);
    if (keys.has(key)) bad(`${where}: keys ${JSON.stringify(k)} collide after U+FFFD substitution`);
    keys.set(key, v);
  }
  const parts = [...keys.keys()].sort(compareUtf8).map((k) => `${quote(k, short)}:${quote(keys.get(k) as string, short)}`);
  return `{${parts.join(',')}}`;
}

function stringList(l: string[], short: boolean): string {
  return `[${l.map((s) => quote(s, short)).join(',')}]`;
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Go's []byte decoding: StdEncoding, padding required, CR/LF ignored; non-zero trailing bits accepted. */
function base64Bytes(s: string, where: string): Buffer {
  const clean = s.replace(/[\r\n]/g, '');
  if (!BASE64_RE.test(clean)) bad(`${where}: not padded standard base64`);
  return Buffer.from(clean, 'base64');
}

function writePlatform(p: Platform, short: boolean): string {
  let out = `{"architecture":${quote(p.architecture, short)},"os":${quote(p.os, short)}`;
  if (p['os.version']) out += `,"os.version":${quote(p['os.version'], short)}`;
  if (p['os.features'] && p['os.features'].length > 0) out += `,"os.features":${stringList(p['os.features'], short)}`;
  if (p.variant) out += `,"variant":${quote(p.variant, short)}`;
  return `${out}}`;
}

function writeDescriptor(d: Descriptor, short: boolean, where: string): string {
  let out = `{"mediaType":${quote(d.mediaType, short)},"digest":${quote(d.digest, short)},"size":${int(d.size, `${where}.size`)}`;
  if (d.urls && d.urls.length > 0) out += `,"urls":${stringList(d.urls, short)}`;
  if (d.annotations && Object.keys(d.annotations).length > 0) {
    out += `,"annotations":${stringMap(d.annotations, short, `${where}.annotations`)}`;
  }
  if (d.data) {
    const bytes = base64Bytes(d.data, `${where}.data`);
    if (bytes.length > 0) out += `,"data":"${bytes.toString('base64')}"`;
  }
  if (d.platform) out += `,"platform":${writePlatform(d.platform, short)}`;
  if (d.artifactType) out += `,"artifactType":${quote(d.artifactType, short)}`;
  return `${out}}`;
}

function writeList(l: Descriptor[] | undefined | null, short: boolean, where: string): string {
  if (l === undefined || l === null) return 'null';
  return `[${l.map((d, i) => writeDescriptor(d, short, `${where}[${i}]`)).join(',')}]`;
}

function writeTail(doc: { subject?: Descriptor; annotations?: Record<string, string> }, short: boolean): string {
  let out = '';
  if (doc.subject) out += `,"subject":${writeDescriptor(doc.subject, short, 'subject')}`;
  if (doc.annotations && Object.keys(doc.annotations).length > 0) {
    out += `,"annotations":${stringMap(doc.annotations, short, 'annotations')}`;
  }
  return `${out}}`;
}

function writeHead(doc: { schemaVersion: number; mediaType?: string; artifactType?: string }, short: boolean): string {
  let out = `{"schemaVersion":${int(doc.schemaVersion, 'schemaVersion')}`;
  if (doc.mediaType) out += `,"mediaType":${quote(doc.mediaType, short)}`;
  if (doc.artifactType) out += `,"artifactType":${quote(doc.artifactType, short)}`;
  return out;
}

/** Go `json.Marshal(ocispec.Manifest)`. */
export function marshalManifest(m: Manifest, opts: GoJsonOptions = {}): Uint8Array {
  const short = opts.goShortEscapes ?? true;
  const body = `${writeHead(m, short)},"config":${writeDescriptor(m.config, short, 'config')},"layers":${writeList(m.layers, short, 'layers')}`;
  return encoder.encode(body + writeTail(m, short));
}

/** Go `json.Marshal(ocispec.Index)`. */
export function marshalIndex(i: Index, opts: GoJsonOptions = {}): Uint8Array {
  const short = opts.goShortEscapes ?? true;
  const body = `${writeHead(i, short)},"manifests":${writeList(i.manifests, short, 'manifests')}`;
  return encoder.encode(body + writeTail(i, short));
}

/** Go `json.Marshal(ocispec.Descriptor)`. */
export function marshalDescriptor(d: Descriptor, opts: GoJsonOptions = {}): Uint8Array {
  return encoder.encode(writeDescriptor(d, opts.goShortEscapes ?? true, 'descriptor'));
}

// ---- parse ------------------------------------------------------------------------------------------

interface Limits {
  maxDescriptors: number;
  maxAnnotations: number;
}

/** Go matches JSON keys to struct fields exactly first, else ASCII-case-insensitively (ſ ≡ s, K ≡ k). */
function fold(k: string): string {
  return k.replace(/[A-Z]/g, (c) => c.toLowerCase()).replace(/\u017f/g, 's').replace(/\u212a/g, 'k');
}

/** The object's values for `names` (null counts as absent), unknown keys dropped. */
function fieldsOf(v: JsonValue, names: readonly string[], where: string): Map<string, JsonValue> {
  if (!(v instanceof JsonObject)) bad(`${where}: expected an object`);
  const out = new Map<string, JsonValue>();
  const seen = new Set<string>();
  for (const [key, val] of v.entries) {
    const name = names.includes(key) ? key : names.find((n) => fold(n) === fold(key));
    if (name === undefined) continue;
    if (seen.has(name)) bad(`${where}: field ${JSON.stringify(name)} given twice`);
    seen.add(name);
    if (val !== null) out.set(name, val);
  }
  return out;
}

function optString(f: Map<string, JsonValue>, name: string, where: string): string | undefined {
  const v = f.get(name);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') bad(`${where}.${name}: expected a string`);
  return v;
}

function reqString(f: Map<string, JsonValue>, name: string, where: string): string {
  const v = optString(f, name, where);
  if (v === undefined) bad(`${where}.${name}: required`);
  return v;
}

function reqInt(f: Map<string, JsonValue>, name: string, where: string): number {
  const v = f.get(name);
  if (v === undefined) bad(`${where}.${name}: required`);
  if (!(v instanceof JsonNumber) || !/^-?(0|[1-9][0-9]*)$/.test(v.raw)) bad(`${where}.${name}: expected an integer`);
  const n = Number(v.raw);
  if (!Number.isSafeInteger(n) || n < 0) bad(`${where}.${name}: must be a non-negative safe integer`);
  return n;
}

function optStringList(f: Map<string, JsonValue>, name: string, where: string): string[] | undefined {
  const v = f.get(name);
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) bad(`${where}.${name}: expected an array of strings`);
  return v.length > 0 ? (v as string[]) : undefined;
}

function optAnnotations(f: Map<string, JsonValue>, where: string, lim: Limits): Record<string, string> | undefined {
  const v = f.get('annotations');
  if (v === undefined) return undefined;
  if (!(v instanceof JsonObject)) bad(`${where}.annotations: expected an object`);
  if (v.entries.length > lim.maxAnnotations) bad(`${where}.annotations: more than ${lim.maxAnnotations} keys`);
  const entries = v.entries.map(([k, val]) => {
    if (typeof val !== 'string') bad(`${where}.annotations[${JSON.stringify(k)}]: expected a string`);
    return [k, val] as const;
  });
  // Object.fromEntries defines own properties, so a key such as "__proto__" stays an ordinary key.
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}

const PLATFORM_FIELDS = ['architecture', 'os', 'os.version', 'os.features', 'variant'] as const;
const DESCRIPTOR_FIELDS = ['mediaType', 'digest', 'size', 'urls', 'annotations', 'data', 'platform', 'artifactType'] as const;
const MANIFEST_FIELDS = ['schemaVersion', 'mediaType', 'artifactType', 'config', 'layers', 'subject', 'annotations'] as const;
const INDEX_FIELDS = ['schemaVersion', 'mediaType', 'artifactType', 'manifests', 'subject', 'annotations'] as const;

function readPlatform(v: JsonValue, where: string): Platform {
  const f = fieldsOf(v, PLATFORM_FIELDS, where);
  const p: Platform = { architecture: reqString(f, 'architecture', where), os: reqString(f, 'os', where) };
  const osVersion = optString(f, 'os.version', where);
  if (osVersion) p['os.version'] = osVersion;
  const features = optStringList(f, 'os.features', where);
  if (features) p['os.features'] = features;
  const variant = optString(f, 'variant', where);
  if (variant) p.variant = variant;
  return p;
}

function readDescriptor(v: JsonValue, where: string, lim: Limits): Descriptor {
  const f = fieldsOf(v, DESCRIPTOR_FIELDS, where);
  const mediaType = reqString(f, 'mediaType', where);
  if (mediaType === '') bad(`${where}.mediaType: must not be empty`);
  const digestText = reqString(f, 'digest', where);
  let digest: string;
  try {
    digest = parseDigest(digestText);
  } catch {
    bad(`${where}.digest: invalid digest ${JSON.stringify(digestText.slice(0, 140))}`);
  }
  const d: Descriptor = { mediaType, digest, size: reqInt(f, 'size', where) };
  const urls = optStringList(f, 'urls', where);
  if (urls) d.urls = urls;
  const annotations = optAnnotations(f, where, lim);
  if (annotations) d.annotations = annotations;
  const data = optString(f, 'data', where);
  if (data !== undefined) {
    const bytes = base64Bytes(data, `${where}.data`);
    if (bytes.length > 0) d.data = bytes.toString('base64');
  }
  const platform = f.get('platform');
  if (platform !== undefined) d.platform = readPlatform(platform, `${where}.platform`);
  const artifactType = optString(f, 'artifactType', where);
  if (artifactType) d.artifactType = artifactType;
  return d;
}

function readList(f: Map<string, JsonValue>, name: string, lim: Limits): Descriptor[] {
  const v = f.get(name);
  if (v === undefined) bad(`${name}: required`);
  if (!Array.isArray(v)) bad(`${name}: expected an array`);
  if (v.length > lim.maxDescriptors) bad(`${name}: more than ${lim.maxDescriptors} entries`);
  return v.map((d, i) => readDescriptor(d, `${name}[${i}]`, lim));
}

function readDocument(bytes: Uint8Array, names: readonly string[], opts: ParseOptions) {
  const maxBytes = opts.maxBytes ?? 4 * 1024 * 1024;
  if (bytes.length > maxBytes) bad(`document is ${bytes.length} bytes, more than ${maxBytes}`);
  const lim: Limits = { maxDescriptors: opts.maxDescriptors ?? 10000, maxAnnotations: opts.maxAnnotations ?? 10000 };
  const f = fieldsOf(readJson(bytes), names, 'document');
  const schemaVersion = reqInt(f, 'schemaVersion', 'document');
  if (schemaVersion !== 2) bad(`schemaVersion is ${schemaVersion}, expected 2`);
  const head: { schemaVersion: number; mediaType?: string; artifactType?: string } = { schemaVersion };
  const mediaType = optString(f, 'mediaType', 'document');
  if (mediaType) head.mediaType = mediaType;
  const artifactType = optString(f, 'artifactType', 'document');
  if (artifactType) head.artifactType = artifactType;
  const subjectValue = f.get('subject');
  const subject = subjectValue === undefined ? undefined : readDescriptor(subjectValue, 'subject', lim);
  const annotations = optAnnotations(f, 'document', lim);
  const tail = { ...(subject ? { subject } : {}), ...(annotations ? { annotations } : {}) };
  return { f, lim, head, tail };
}

/** Decode and validate an image manifest (OCI or Docker schema2) as Go decodes it into `ocispec.Manifest`. */
export function parseManifest(bytes: Uint8Array, opts: ParseOptions = {}): Manifest {
  const { f, lim, head, tail } = readDocument(bytes, MANIFEST_FIELDS, opts);
  if (head.mediaType && isIndexType(head.mediaType)) bad(`mediaType ${head.mediaType} is an index, not a manifest`);
  const config = f.get('config');
  if (config === undefined) bad('config: required');
  return { ...head, config: readDescriptor(config, 'config', lim), layers: readList(f, 'layers', lim), ...tail };
}

/** Decode and validate an image index or Docker manifest list as Go decodes it into `ocispec.Index`. */
export function parseIndex(bytes: Uint8Array, opts: ParseOptions = {}): Index {
  const { f, lim, head, tail } = readDocument(bytes, INDEX_FIELDS, opts);
  if (head.mediaType && isManifestType(head.mediaType)) bad(`mediaType ${head.mediaType} is a manifest, not an index`);
  return { ...head, manifests: readList(f, 'manifests', lim), ...tail };
}

/** True when `bytes` is a manifest that Go's decode + re-marshal reproduces byte for byte. */
export function isGoCanonicalManifest(bytes: Uint8Array, opts: GoJsonOptions = {}): boolean {
  try {
    return Buffer.from(marshalManifest(parseManifest(bytes), opts)).equals(bytes);
  } catch {
    return false;
  }
}
