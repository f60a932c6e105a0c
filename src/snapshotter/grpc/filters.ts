/**
 * containerd's `List` filter strings, as far as snapshotters see them (../shared/spec/containerd-integration.md
 * §1.5): each string is a comma-joined AND of selectors `field[.path]` with an optional operator `==`, `!=`
 * or `~=` (regular expression) and a value that is bare, double-quoted (with backslash escapes) or
 * `/regex/`; path parts may be quoted (`labels."containerd.io/snapshot.ref"`). Several strings are OR-ed
 * and an empty list matches everything. A selector without an operator tests that the field is present
 * and non-empty. Fields: name, parent, kind, labels.<key>.
 */
import { SnapshotError } from './snapshot-error.js';

export interface FilterFields {
  name: string;
  parent: string;
  kind: string;
  labels: Record<string, string>;
}

interface Selector {
  path: string[];
  op?: '==' | '!=' | '~=';
  value?: string;
}

export type Filter = (f: FilterFields) => boolean;

function bad(src: string, why: string): SnapshotError {
  return new SnapshotError('INVALID_ARGUMENT', `filter ${JSON.stringify(src)}: ${why}`);
}

/** Reads a double-quoted string starting at `s[i] === '"'`; returns the value and the index after it. */
function quoted(src: string, i: number, close = '"'): [string, number] {
  let out = '';
  for (let j = i + 1; j < src.length; j++) {
    const c = src[j]!;
    if (c === '\\' && j + 1 < src.length) {
      const n = src[++j]!;
      out += n === 'n' ? '\n' : n === 't' ? '\t' : n;
    } else if (c === close) return [out, j + 1];
    else out += c;
  }
  throw bad(src, 'unterminated quote');
}

function parseOne(src: string): Selector[] {
  const sels: Selector[] = [];
  let i = 0;
  const skipWs = (): void => {
    while (i < src.length && (src[i] === ' ' || src[i] === '\t')) i++;
  };
  for (;;) {
    skipWs();
    const path: string[] = [];
    for (;;) {
      if (src[i] === '"') {
        const [v, next] = quoted(src, i);
        path.push(v);
        i = next;
      } else {
        const m = /^[A-Za-z0-9_-]+/.exec(src.slice(i));
        if (!m) throw bad(src, `expected a field name at ${i}`);
        path.push(m[0]);
        i += m[0].length;
      }
      if (src[i] === '.') i++;
      else break;
    }
    skipWs();
    const sel: Selector = { path };
    const op = src.slice(i, i + 2);
    if (op === '==' || op === '!=' || op === '~=') {
      i += 2;
      skipWs();
      sel.op = op;
      if (src[i] === '"') [sel.value, i] = quoted(src, i);
      else if (src[i] === '/' && op === '~=') [sel.value, i] = quoted(src, i, '/');
      else {
        const end = src.indexOf(',', i);
        sel.value = (end < 0 ? src.slice(i) : src.slice(i, end)).trim();
        i = end < 0 ? src.length : end;
      }
      skipWs();
    }
    sels.push(sel);
    if (i >= src.length) return sels;
    if (src[i] !== ',') throw bad(src, `unexpected ${JSON.stringify(src[i])} at ${i}`);
    i++;
  }
}

function fieldValue(f: FilterFields, path: string[]): string | undefined {
  const [head, ...rest] = path;
  if (head === 'labels') return rest.length === 0 ? undefined : f.labels[rest.join('.')];
  if (rest.length > 0) return undefined;
  if (head === 'name') return f.name;
  if (head === 'parent') return f.parent;
  if (head === 'kind') return f.kind;
  return undefined;
}

function matchSel(sel: Selector, f: FilterFields): boolean {
  const v = fieldValue(f, sel.path);
  if (sel.op === undefined) return v !== undefined && v !== '';
  if (sel.op === '==') return v === sel.value;
  if (sel.op === '!=') return v !== sel.value;
  if (v === undefined) return false;
  return new RegExp(sel.value ?? '').test(v);
}

/** Compiles containerd filter strings into one predicate; throws INVALID_ARGUMENT on a malformed string. */
export function compileFilters(filters: readonly string[]): Filter {
  const alts = filters.filter((s) => s.trim() !== '').map(parseOne);
  for (const alt of alts) for (const s of alt) if (s.op === '~=') {
    try {
      new RegExp(s.value ?? '');
    } catch {
      throw bad(s.value ?? '', 'invalid regular expression');
    }
  }
  if (alts.length === 0) return () => true;
  return (f) => alts.some((alt) => alt.every((s) => matchSel(s, f)));
}
