/**
 * A strict JSON reader for registry documents (RFC 8259, no extensions). Unlike `JSON.parse` it keeps
 * what Go's `encoding/json` decoder would see and `JSON.parse` hides: number literals stay as their raw
 * text (so `1.0` or `1e3` can be refused where Go refuses them for an int64 field), and a repeated object
 * key is an error (Go merges repeated maps/structs, `JSON.parse` keeps the last; refusing avoids both
 * behaviours silently diverging). Input is UTF-8 bytes decoded fatally: invalid UTF-8 or a byte-order mark
 * is an error. Strings come back with lone UTF-16 surrogates (from `\ud800`-style escapes) replaced by
 * U+FFFD, as Go's decoder does. Errors are `OciError('MANIFEST_INVALID')`.
 */
import { OciError } from './errors.js';

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;

/** A number literal, kept as written. */
export class JsonNumber {
  constructor(readonly raw: string) {}
}

/** An object: keys in document order, no duplicates. */
export class JsonObject {
  constructor(readonly entries: ReadonlyArray<readonly [string, JsonValue]>) {}
}

const MAX_DEPTH = 64;
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const SIMPLE_ESCAPES: Readonly<Record<string, string>> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
const LONE_SURROGATE_RE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Replace lone surrogates by U+FFFD, as Go does when it decodes or encodes a string. */
export function wellFormed(s: string): string {
  return s.replace(LONE_SURROGATE_RE, '\uFFFD');
}

function fail(msg: string, pos: number): never {
  throw new OciError('MANIFEST_INVALID', `invalid JSON: ${msg} at character ${pos}`);
}

/** Parse `bytes` (UTF-8) into a JsonValue tree. */
export function readJson(bytes: Uint8Array): JsonValue {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new OciError('MANIFEST_INVALID', 'invalid JSON: not valid UTF-8');
  }
  let pos = 0;
  const ws = (): void => {
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) pos++;
      else break;
    }
  };
  const str = (): string => {
    pos++; // opening quote
    let out = '';
    let run = pos;
    for (;;) {
      if (pos >= text.length) fail('unterminated string', pos);
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        out += text.slice(run, pos);
        pos++;
        return wellFormed(out);
      }
      if (c < 0x20) fail('control character in string', pos);
      if (c !== 0x5c) {
        pos++;
        continue;
      }
      out += text.slice(run, pos);
      const e = text[pos + 1];
      const simple = e === undefined ? undefined : SIMPLE_ESCAPES[e];
      if (simple !== undefined) {
        out += simple;
        pos += 2;
      } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(pos + 2, pos + 6))) {
        out += String.fromCharCode(parseInt(text.slice(pos + 2, pos + 6), 16));
        pos += 6;
      } else {
        fail('bad escape', pos);
      }
      run = pos;
    }
  };
  const value = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail('nesting too deep', pos);
    ws();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const entries: Array<[string, JsonValue]> = [];
      const seen = new Set<string>();
      ws();
      if (text[pos] === '}') {
        pos++;
        return new JsonObject(entries);
      }
      for (;;) {
        ws();
        if (text[pos] !== '"') fail('expected object key', pos);
        const keyPos = pos;
        const key = str();
        if (seen.has(key)) fail(`duplicate key ${JSON.stringify(key)}`, keyPos);
        seen.add(key);
        ws();
        if (text[pos] !== ':') fail("expected ':'", pos);
        pos++;
        entries.push([key, value(depth + 1)]);
        ws();
        if (text[pos] === ',') pos++;
        else if (text[pos] === '}') {
          pos++;
          return new JsonObject(entries);
        } else fail("expected ',' or '}'", pos);
      }
    }
    if (c === '[') {
      pos++;
      const items: JsonValue[] = [];
      ws();
      if (text[pos] === ']') {
        pos++;
        return items;
      }
      for (;;) {
        items.push(value(depth + 1));
        ws();
        if (text[pos] === ',') pos++;
        else if (text[pos] === ']') {
          pos++;
          return items;
        } else fail("expected ',' or ']'", pos);
      }
    }
    if (c === '"') return str();
    for (const [lit, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(lit, pos)) {
        pos += lit.length;
        return v;
      }
    }
    NUMBER_RE.lastIndex = pos;
    const m = NUMBER_RE.exec(text);
    if (m && m[0].length > 0) {
      pos += m[0].length;
      return new JsonNumber(m[0]);
    }
    return fail('unexpected character', pos);
  };
  const root = value(0);
  ws();
  if (pos !== text.length) fail('trailing data', pos);
  return root;
}
