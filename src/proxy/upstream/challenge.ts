/**
 * Parser for `WWW-Authenticate` challenges (RFC 7235 syntax as registries send it):
 * `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull"`,
 * `Basic realm="Registry Realm"`, or several challenges in one header. Parameter names are lowercased,
 * quoted values unescaped; anything malformed ends the parse quietly (a bad challenge means "no usable auth").
 */

export interface Challenge {
  /** Lowercase scheme: `bearer`, `basic`, … */
  scheme: string;
  params: Record<string, string>;
}

export function parseChallenges(value: string | string[] | undefined): Challenge[] {
  if (value === undefined) return [];
  if (Array.isArray(value)) return value.flatMap((v) => parseChallenges(v));
  const out: Challenge[] = [];
  let i = 0;
  const s = value;
  const skipWs = () => { while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++; };
  const token = () => {
    const m = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(s.slice(i));
    if (!m) return undefined;
    i += m[0].length;
    return m[0];
  };
  while (i < s.length) {
    skipWs();
    while (s[i] === ',') { i++; skipWs(); }
    const scheme = token();
    if (!scheme) break;
    const ch: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(ch);
    for (;;) {
      skipWs();
      const save = i;
      const name = token();
      skipWs();
      if (!name || s[i] !== '=') { i = save; break; } // next challenge (or end)
      i++;
      skipWs();
      let val = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          val += s[i++];
        }
        i++;
      } else {
        val = token() ?? '';
      }
      ch.params[name.toLowerCase()] = val;
      skipWs();
      if (s[i] === ',') i++;
    }
  }
  return out;
}
