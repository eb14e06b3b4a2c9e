// A windowed grid: however many items it holds, only the rows on screen (plus a margin) exist in the DOM.
// Tiles are absolutely placed in a container as tall as all rows, so the page scrolls as if all were there.

export class VirtualGrid {
  /**
   * @param {HTMLElement} root  the container (position: relative)
   * @param {{minWidth: number, rowHeight: number, gap: number, overscan?: number,
   *          create: () => HTMLElement, paint: (el: HTMLElement, item: any) => void, key: (item: any) => string}} opts
   */
  constructor(root, opts) {
    this.root = root;
    this.opts = { overscan: 2, ...opts };
    this.items = [];
    this.shown = new Map();  // key -> element on screen
    this.spare = [];
    this.cols = 1;
    this.frame = 0;
    this.onScroll = () => this.schedule();
    window.addEventListener("scroll", this.onScroll, { passive: true });
    window.addEventListener("resize", this.onScroll);
  }

  destroy() {
    window.removeEventListener("scroll", this.onScroll);
    window.removeEventListener("resize", this.onScroll);
    cancelAnimationFrame(this.frame);
  }

  setItems(items) { this.items = items; this.draw(true); }

  // Repaint the tiles of these keys if they are on screen (the data behind them changed).
  repaint(keys) {
    for (const k of keys) {
      const el = this.shown.get(k);
      if (el) this.opts.paint(el, el._item);
    }
  }

  isShown(key) { return this.shown.has(key); }

  schedule() { if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(false); }); }

  draw(all) {
    const { minWidth, rowHeight, gap, overscan } = this.opts;
    const width = this.root.clientWidth || window.innerWidth;
    this.cols = Math.max(1, Math.floor((width + gap) / (minWidth + gap)));
    const tileWidth = (width - gap * (this.cols - 1)) / this.cols;
    const rows = Math.ceil(this.items.length / this.cols);
    const pitch = rowHeight + gap;
    this.root.style.height = `${Math.max(0, rows * pitch - gap)}px`;
    const top = this.root.getBoundingClientRect().top;  // negative once scrolled past the grid's start
    const first = Math.max(0, Math.floor(-top / pitch) - overscan);
    const last = Math.min(rows - 1, Math.ceil((window.innerHeight - top) / pitch) + overscan);
    const wanted = new Map();
    for (let r = first; r <= last; r++) {
      for (let c = 0; c < this.cols; c++) {
        const i = r * this.cols + c;
        if (i >= this.items.length) break;
        wanted.set(this.opts.key(this.items[i]), [i, r, c]);
      }
    }
    for (const [k, el] of this.shown) {
      if (!wanted.has(k)) { this.shown.delete(k); el.remove(); this.spare.push(el); }
    }
    for (const [k, [i, r, c]] of wanted) {
      let el = this.shown.get(k);
      const item = this.items[i];
      if (!el) {
        el = this.spare.pop() || this.opts.create();
        this.shown.set(k, el);
        this.root.appendChild(el);
        el._item = null;
      }
      const x = Math.round(c * (tileWidth + gap)), y = r * pitch;
      const place = `${x},${y},${tileWidth}`;
      if (el._place !== place) {
        el._place = place;
        el.style.transform = `translate(${x}px, ${y}px)`;
        el.style.width = `${tileWidth}px`;
        el.style.height = `${rowHeight}px`;
      }
      if (all || el._item !== item) { el._item = item; this.opts.paint(el, item); }
    }
  }
}
