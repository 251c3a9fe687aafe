/** A minimal deb822 (Debian control file) reader: dpkg status, apt Packages indexes. */

export type Paragraph = Record<string, string>;

/** Split a deb822 document into paragraphs; continuation lines are folded into their field. */
export function parseDeb822(text: string): Paragraph[] {
  const out: Paragraph[] = [];
  let current: Paragraph = {};
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (Object.keys(current).length > 0) out.push(current);
      current = {};
      last = undefined;
      continue;
    }
    if ((line.startsWith(' ') || line.startsWith('\t')) && last) {
      current[last] += `\n${line.slice(1)}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    last = line.slice(0, colon);
    current[last] = line.slice(colon + 1).trim();
  }
  if (Object.keys(current).length > 0) out.push(current);
  return out;
}
