// A document's Markdown, shown: the preview of the Docs panel. Built as
// DOM nodes, never as HTML text, so nothing a document holds can run in
// the page. Covers what notes are written with: headings, paragraphs,
// lists (and task boxes), quotes, fenced code, rules; inline code, strong,
// emphasis, strikethrough and links (http, https and mailto only).

/** The nodes of `source`, rendered into `into` (emptied first). */
export function renderMarkdown(source, into) {
  into.replaceChildren(...blocks(source.replace(/\r\n?/g, '\n').split('\n')));
}

function el(tag, children = [], props = {}) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;

function blocks(lines) {
  const out = [];
  let at = 0;
  while (at < lines.length) {
    const line = lines[at];
    const fence = line.match(/^\s*(```|~~~)/);
    if (fence) {
      const code = [];
      at += 1;
      while (at < lines.length && !lines[at].trimStart().startsWith(fence[1])) {
        code.push(lines[at]);
        at += 1;
      }
      at += 1;
      out.push(el('pre', [el('code', [code.join('\n')])]));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      out.push(el(`h${heading[1].length}`, inline(heading[2])));
      at += 1;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      out.push(el('hr'));
      at += 1;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const quoted = [];
      while (at < lines.length && /^\s*>/.test(lines[at])) {
        quoted.push(lines[at].replace(/^\s*>\s?/, ''));
        at += 1;
      }
      out.push(el('blockquote', blocks(quoted)));
      continue;
    }
    if (LIST_ITEM.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const items = [];
      while (at < lines.length && LIST_ITEM.test(lines[at])) {
        const [, , , text] = lines[at].match(LIST_ITEM);
        const task = text.match(/^\[([ xX])\]\s+(.*)$/);
        const item = task
          ? el('li', [el('input', [], { type: 'checkbox', checked: task[1] !== ' ', disabled: true }), ' ', ...inline(task[2])])
          : el('li', inline(text));
        items.push(item);
        at += 1;
      }
      out.push(el(ordered ? 'ol' : 'ul', items));
      continue;
    }
    if (!line.trim()) {
      at += 1;
      continue;
    }
    const paragraph = [];
    while (at < lines.length && lines[at].trim() && !startsBlock(lines[at])) {
      paragraph.push(lines[at]);
      at += 1;
    }
    const parts = [];
    paragraph.forEach((text, n) => {
      if (n > 0) {
        parts.push(el('br'));
      }
      parts.push(...inline(text));
    });
    out.push(el('p', parts));
  }
  return out;
}

function startsBlock(line) {
  return /^\s*(```|~~~|#{1,6}\s|>)/.test(line) || LIST_ITEM.test(line);
}

// Inline spans, outermost first: code (nothing inside it is read), links,
// then strong, strikethrough and emphasis.
const INLINE = [
  [/`([^`]+)`/, (m) => el('code', [m[1]])],
  [/\[([^\]]+)\]\(([^)\s]+)\)/, (m) => link(m[1], m[2])],
  [/\*\*(.+?)\*\*|__(.+?)__/, (m) => el('strong', inline(m[1] ?? m[2]))],
  [/~~(.+?)~~/, (m) => el('del', inline(m[1]))],
  [/\*([^*\s][^*]*?)\*|\b_([^_\s][^_]*?)_\b/, (m) => el('em', inline(m[1] ?? m[2]))],
];

function inline(text) {
  let first = null;
  for (const [pattern, make] of INLINE) {
    const match = pattern.exec(text);
    if (match && (first === null || match.index < first.match.index)) {
      first = { match, make };
    }
  }
  if (!first) {
    return text ? [text] : [];
  }
  const { match, make } = first;
  const before = text.slice(0, match.index);
  const after = text.slice(match.index + match[0].length);
  return [...(before ? [before] : []), make(match), ...inline(after)];
}

function link(label, href) {
  if (!/^(https?:|mailto:)/i.test(href)) {
    return `[${label}](${href})`;
  }
  return el('a', inline(label), { href, rel: 'noopener noreferrer nofollow', target: '_blank' });
}
