// Accessibility basics of a rendered page, checked in the browser (no third-party checker):
// every form control has an accessible name, images and SVG charts have a text alternative,
// the page has headings, no id is used twice, and visible text meets the WCAG AA contrast
// minimum (4.5:1, or 3:1 for large text) computed from the colours the browser rendered, and
// non-text contrast (WCAG 2.2 1.4.11): the focus outline of every focusable control and the
// edge of every filled or bordered control reach 3:1 against the colours next to them.
// `skip` is a CSS selector of subtrees left out (the third-party labeling editor).

/** The problems found on `page` (an empty list when there are none). Moves the focus. */
export async function accessibilityProblems(page, { skip = '#editor' } = {}) {
  // Tab first: focus then moves by keyboard, and the browser draws the focus of controls that
  // a script focuses next as it draws keyboard focus (`:focus-visible`), which is what the
  // focus check measures.
  await page.keyboard.press('Tab');
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
  // Non-text contrast. The colour just outside `el`: its parent's background.
  const around = (el) => (el.parentElement ? background(el.parentElement) : { r: 255, g: 255, b: 255, a: 1 });
  const rgb = (c) => `rgb(${Math.round(c.r)}, ${Math.round(c.g)}, ${Math.round(c.b)})`;
  const same = (a, b) => Math.round(a.r) === Math.round(b.r) && Math.round(a.g) === Math.round(b.g) && Math.round(a.b) === Math.round(b.b);
  // The control's own fill over what is around it, and its border (drawn over the fill), if any.
  const fillOf = (el, outside) => {
    const c = parse(getComputedStyle(el).backgroundColor);
    return c && c.a > 0 ? over(c, outside) : outside;
  };
  const borderOf = (el, fill) => {
    const s = getComputedStyle(el);
    const c = parse(s.borderTopColor);
    return s.borderTopStyle !== 'none' && parseFloat(s.borderTopWidth) >= 1 && c && c.a > 0 ? over(c, fill) : null;
  };

  // The boundary of filled or bordered controls: its border, or else its fill, against what is
  // around it. Controls that draw neither (text only) and native check boxes are left out.
  const boxed = 'button, select, textarea, input:not([type=hidden]):not([type=checkbox]):not([type=radio]):not([type=file]):not([type=range]):not([type=color]):not([type=image])';
  for (const el of document.querySelectorAll(boxed)) {
    if (skipped(el) || el.disabled || !visible(el)) continue;
    const outside = around(el);
    if (!outside) continue;
    const fill = fillOf(el, outside);
    const border = borderOf(el, fill);
    if (!border && same(fill, outside)) continue; // nothing drawn
    const edge = Math.max(border ? ratio(border, outside) : 0, ratio(fill, outside));
    if (edge < 3) {
      problems.push(`boundary ${edge.toFixed(2)}:1 < 3:1 (${border ? `border ${rgb(border)}, ` : ''}fill ${rgb(fill)} on ${rgb(outside)}): ${describe(el)}`);
    }
  }

  // The focus outline of every focusable control, focused in turn: it is drawn (2px or wider)
  // and reaches 3:1 against the colours next to it: what is around the control and, when the
  // outline touches or overlaps the control (offset ≤ 0), the control's edge.
  const before = document.activeElement;
  const focusable = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex="-1"])';
  for (const el of document.querySelectorAll(focusable)) {
    if (skipped(el) || el.disabled || !visible(el)) continue;
    el.focus({ preventScroll: true });
    if (document.activeElement !== el) continue;
    const s = getComputedStyle(el);
    if (s.outlineStyle === 'none' || parseFloat(s.outlineWidth) < 2) {
      problems.push(`focus without an outline of 2px or more: ${describe(el)}`);
      continue;
    }
    const outside = around(el);
    const colour = parse(s.outlineColor);
    if (!outside || !colour) continue;
    const outline = over(colour, outside);
    const next = [['around', outside]];
    if (parseFloat(s.outlineOffset) <= 0) {
      const fill = fillOf(el, outside);
      next.push(['control', borderOf(el, fill) ?? fill]);
    }
    for (const [where, c] of next) {
      const got = ratio(outline, c);
      if (got < 3) problems.push(`focus outline ${got.toFixed(2)}:1 < 3:1 (${rgb(outline)} on ${where} ${rgb(c)}): ${describe(el)}`);
    }
  }
  if (before && before !== document.body) before.focus({ preventScroll: true });
  else document.activeElement?.blur();

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
