// Accessibility basics of a rendered page, checked in the browser (no third-party checker):
// every form control has an accessible name, images and SVG charts have a text alternative,
// the page has headings, no id is used twice, and visible text meets the WCAG AA contrast
// minimum (4.5:1, or 3:1 for large text) computed from the colours the browser rendered.
// `skip` is a CSS selector of subtrees left out (the third-party labeling editor).

/** The problems found on `page` (an empty list when there are none). */
export async function accessibilityProblems(page, { skip = '#editor' } = {}) {
  return page.evaluate(inPage, { skip });
}

// Runs inside the page: keep it self-contained.
function inPage({ skip }) {
  const problems = [];
  const skipped = (el) => skip && el.closest(skip) !== null;
  const describe = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += `#${el.id}`;
    else if (el.getAttribute('name')) s += `[name=${el.getAttribute('name')}]`;
    else if (el.className && typeof el.className === 'string') s += `.${el.className.trim().split(/\s+/).join('.')}`;
    const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 40);
    return text ? `${s} "${text}"` : s;
  };
  const textOf = (ids) => ids.split(/\s+/).map((id) => document.getElementById(id)?.textContent ?? '').join(' ').trim();

  // Accessible names of form controls.
  for (const el of document.querySelectorAll('input, select, textarea, button')) {
    if (skipped(el) || (el.tagName === 'INPUT' && el.type === 'hidden')) continue;
    let name = el.getAttribute('aria-label')?.trim() || '';
    if (!name && el.getAttribute('aria-labelledby')) name = textOf(el.getAttribute('aria-labelledby'));
    if (!name && el.labels) name = [...el.labels].map((l) => l.textContent).join(' ').trim();
    if (!name && el.tagName === 'BUTTON') name = el.textContent.trim();
    if (!name && el.tagName === 'INPUT' && ['submit', 'button', 'reset'].includes(el.type)) name = (el.value || '').trim();
    if (!name && el.tagName === 'INPUT' && el.type === 'image') name = (el.alt || '').trim();
    if (!name) name = (el.getAttribute('title') || '').trim();
    if (!name) problems.push(`no accessible name: ${describe(el)}`);
  }

  // Text alternatives of images and charts.
  for (const img of document.querySelectorAll('img')) {
    if (skipped(img)) continue;
    if (!img.hasAttribute('alt')) problems.push(`image without alt: ${describe(img)}`);
  }
  for (const svg of document.querySelectorAll('svg')) {
    if (skipped(svg) || svg.closest('[aria-hidden=true]') || svg.parentElement.closest('svg')) continue;
    const named = svg.getAttribute('aria-label')?.trim()
      || (svg.getAttribute('aria-labelledby') && textOf(svg.getAttribute('aria-labelledby')))
      || svg.querySelector(':scope > title')?.textContent.trim();
    if (!named) problems.push(`SVG without a text alternative: ${describe(svg)}`);
    else if (svg.getAttribute('role') !== 'img') problems.push(`SVG chart without role=img: ${describe(svg)}`);
  }

  // Headings.
  if (!document.querySelector('h1')) problems.push('no h1 heading');

  // Ids used twice.
  const seen = new Map();
  for (const el of document.querySelectorAll('[id]')) seen.set(el.id, (seen.get(el.id) ?? 0) + 1);
  for (const [id, n] of seen) if (n > 1) problems.push(`id "${id}" used ${n} times`);

  // Contrast of visible text.
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const [r, g, b, a = 1] = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
    return { r, g, b, a };
  };
  const over = (top, below) => ({
    r: top.r * top.a + below.r * (1 - top.a),
    g: top.g * top.a + below.g * (1 - top.a),
    b: top.b * top.a + below.b * (1 - top.a),
    a: 1,
  });
  // The background behind `el`: its own and its ancestors' background colours, composed.
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.backgroundImage !== 'none' && !(e instanceof SVGElement)) return null; // unknown
      const c = parse(style.backgroundColor);
      if (c && c.a > 0) {
        layers.push(c);
        if (c.a >= 1) break;
      }
    }
    let colour = { r: 255, g: 255, b: 255, a: 1 }; // the canvas
    for (const layer of layers.reverse()) colour = over(layer, colour);
    return colour;
  };
  const luminance = ({ r, g, b }) => {
    const lin = (v) => {
      const s = v / 255;
      return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const visible = (el) => {
    const rect = el.getBoundingClientRect();
    if (rect.width < 2 || rect.height < 2) return false;
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.display === 'none' || s.visibility === 'hidden' || Number(s.opacity) === 0) return false;
      if (s.clipPath && s.clipPath !== 'none') return false; // visually hidden
      if (e.hidden) return false;
    }
    return rect.right > 0 && rect.bottom > 0; // the off-screen skip link
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const checked = new Set();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || checked.has(el) || !node.textContent.trim()) continue;
    checked.add(el);
    if (skipped(el) || ['SCRIPT', 'STYLE', 'OPTION', 'TITLE'].includes(el.tagName) || el.closest('[disabled], [aria-disabled=true]')) continue;
    if (!visible(el)) continue;
    const style = getComputedStyle(el);
    const svgText = el instanceof SVGElement;
    const fg = parse(svgText ? style.fill : style.color);
    const bg = background(el);
    if (!fg || !bg) continue;
    const shown = over(fg, bg);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const needed = large ? 3 : 4.5;
    const got = ratio(shown, bg);
    if (got < needed) {
      problems.push(`contrast ${got.toFixed(2)}:1 < ${needed}:1 (${style.color} on rgb(${Math.round(bg.r)}, ${Math.round(bg.g)}, ${Math.round(bg.b)})): ${describe(el)}`);
    }
  }
  return problems;
}

/**
 * The controls Tab visits from the top of the page (at most `count`, up to the last one): an
 * id (or name, or text), the position, and whether the focus shows an outline.
 */
export async function tabOrder(page, count) {
  // Tab goes on from the focused element: start from a focusable-by-script mark at the top.
  await page.evaluate(() => {
    let start = document.getElementById('a11y-tab-start');
    if (!start) {
      start = document.createElement('span');
      start.id = 'a11y-tab-start';
      start.tabIndex = -1;
      document.body.prepend(start);
    }
    start.focus();
    window.scrollTo(0, 0);
  });
  const visited = [];
  for (let i = 0; i < count; i++) {
    await page.keyboard.press('Tab');
    const step = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null; // past the last control
      const style = getComputedStyle(el);
      const rect = el.getBoundingClientRect();
      return {
        id: el.id || el.getAttribute('name') || el.textContent.trim(),
        top: rect.top + window.scrollY,
        left: rect.left + window.scrollX,
        outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
        focusVisible: el.matches(':focus-visible'),
      };
    });
    if (!step) break;
    visited.push(step);
  }
  return visited;
}
