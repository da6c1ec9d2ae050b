/**
 * WWW-Authenticate parsing (RFC 9110 §11.6.1, RFC 6750 §3). A header may hold several
 * challenges, each a scheme followed by comma-separated auth-params with quoted values.
 */
export interface Challenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

const MAX_HEADER = 8192;

export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const text = (Array.isArray(header) ? header.join(', ') : header).slice(0, MAX_HEADER);
  const out: Challenge[] = [];
  let i = 0;
  let current: { scheme: string; params: Record<string, string> } | undefined;
  while (i < text.length) {
    while (i < text.length && (text[i] === ' ' || text[i] === ',' || text[i] === '\t')) i++;
    const tokenMatch = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(text.slice(i));
    if (!tokenMatch) break;
    const token = tokenMatch[0];
    let j = i + token.length;
    while (text[j] === ' ' || text[j] === '\t') j++;
    if (text[j] === '=') {
      j++;
      while (text[j] === ' ') j++;
      let value = '';
      if (text[j] === '"') {
        j++;
        while (j < text.length && text[j] !== '"') {
          if (text[j] === '\\' && j + 1 < text.length) j++;
          value += text[j];
          j++;
        }
        j++;
      } else {
        const m = /^[^,\s]*/.exec(text.slice(j));
        value = m ? m[0] : '';
        j += value.length;
      }
      if (current) current.params[token.toLowerCase()] = value;
      i = j;
    } else {
      current = { scheme: token.toLowerCase(), params: Object.create(null) as Record<string, string> };
      out.push(current);
      i = j;
    }
  }
  return out;
}
