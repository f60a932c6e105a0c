/**
 * Redirect wrapper: follows 301/302/303/307/308 answers to GET/HEAD (registries send blobs to object storage,
 * often on another host). A redirect target is only ever reached as the answer of a configured upstream, the
 * scheme may not drop from https to http unless the upstream itself is plain http, and the Authorization
 * header is dropped as soon as the origin changes (pre-signed storage URLs carry their own credentials and
 * reject a second one). The chain is bounded.
 */
import { OciError } from '../../oci/errors.js';
import type { Send } from './transport.js';
import { discard, header } from './transport.js';

export interface RedirectOptions {
  maxRedirects: number;
  /** Whether http:// targets are acceptable (only for upstreams configured with an http:// URL). */
  allowPlainHttp: boolean;
}

const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);

export function withRedirects(send: Send, opts: RedirectOptions): Send {
  return async (first) => {
    let req = first;
    for (let hops = 0; ; hops++) {
      const res = await send(req);
      const location = header(res, 'location');
      if (!REDIRECT_STATUS.has(res.status) || !location) return res;
      discard(res);
      if (hops >= opts.maxRedirects) throw new OciError('UNAVAILABLE', `upstream redirected more than ${opts.maxRedirects} times`);
      let next: URL;
      try {
        next = new URL(location, req.url);
      } catch {
        throw new OciError('UNAVAILABLE', 'upstream sent an invalid redirect location');
      }
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && opts.allowPlainHttp)) {
        throw new OciError('UNAVAILABLE', `upstream redirected to a disallowed scheme ${next.protocol}`);
      }
      const headers = { ...req.headers };
      if (next.origin !== req.url.origin) delete headers.authorization;
      req = { ...req, url: next, headers };
    }
  };
}
