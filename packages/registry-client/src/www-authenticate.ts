/**
 * A parsed WWW-Authenticate challenge (RFC 7235), as registries send it on a 401:
 * `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
 */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses every challenge in a WWW-Authenticate header value; parameter names are lower-cased. */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const skipWs = () => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
  };
  const token = () => {
    const m = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(s.slice(i));
    if (!m) return '';
    i += m[0].length;
    return m[0];
  };
  while (i < s.length) {
    skipWs();
    const scheme = token();
    if (!scheme) break;
    const params: Record<string, string> = {};
    for (;;) {
      const save = i;
      skipWs();
      const name = token();
      while (s[i] === ' ') i++;
      if (!name || s[i] !== '=') {
        i = save; // the next challenge's scheme, or the end
        break;
      }
      i++;
      while (s[i] === ' ') i++;
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i++];
        }
        i++;
      } else {
        value = token();
      }
      params[name.toLowerCase()] = value;
    }
    out.push({ scheme: scheme.toLowerCase() === 'bearer' ? 'Bearer' : scheme.toLowerCase() === 'basic' ? 'Basic' : scheme, params });
  }
  return out;
}
