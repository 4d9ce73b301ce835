// @ts-check
/**
 * The overview's row table: every row the page holds (a query's whole
 * result; a live dataset's newest rows), a page at a time, sortable by any
 * column. A live dataset shows its newest rows first until another order is
 * chosen.
 */
import { DataType } from 'apache-arrow';

/** Rows on one page of the table. */
export const TABLE_PAGE_ROWS = 20;

/** @param {any} value @param {import('apache-arrow').DataType} type */
export function formatCell(value, type) {
  if (value === null || value === undefined) return '∅';
  if (DataType.isTimestamp(type)) return new Date(Number(value)).toISOString().replace('T', ' ').replace('Z', '');
  if (DataType.isDate(type)) return new Date(Number(value)).toISOString().slice(0, 10);
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toLocaleString('en', { maximumFractionDigits: 4 });
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'string') return value.length > 80 ? `${value.slice(0, 77)}…` : value;
  if (value instanceof Uint8Array) return `0x${Array.from(value.slice(0, 16), (b) => b.toString(16).padStart(2, '0')).join('')}${value.length > 16 ? '…' : ''}`;
  try {
    const text = JSON.stringify(typeof value.toJSON === 'function' ? value.toJSON() : value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
    return text.length > 80 ? `${text.slice(0, 77)}…` : text;
  } catch {
    return String(value);
  }
}

/** A sort key: numbers, bigints and strings compare; nulls last. @param {any} v */
function sortKey(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Date) return v.getTime();
  return String(v);
}

/** @param {any} a @param {any} b */
function compare(a, b) {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export class RowTable {
  /**
   * @param {HTMLTableElement} table
   * @param {HTMLElement} pager  gets the page buttons and "rows a–b of n"
   * @param {HTMLElement} caption  says which rows are shown
   */
  constructor(table, pager, caption) {
    this.table = table;
    this.pager = pager;
    this.caption = caption;
    /** @type {import('apache-arrow').Schema|null} */
    this.schema = null;
    /** @type {import('apache-arrow').RecordBatch[]} */
    this.batches = [];
    this.live = false;
    this.page = 0;
    /** @type {number} column index, -1 for arrival order */
    this.sortColumn = -1;
    this.sortDescending = false;
    /** @type {Int32Array|null} sorted order, dropped when the data changes */
    this.order = null;
    this.rowCount = 0;
    /** @type {number[]} first row of each batch */
    this.offsets = [];
  }

  /** @param {import('apache-arrow').Schema|null} schema @param {boolean} live */
  reset(schema, live) {
    this.schema = schema;
    this.live = live;
    this.batches = [];
    this.offsets = [];
    this.rowCount = 0;
    this.page = 0;
    this.sortColumn = -1;
    this.sortDescending = false;
    this.order = null;
    this.renderHead();
    this.render();
  }

  /** The rows changed (appended, or a live window moved). @param {import('apache-arrow').RecordBatch[]} batches */
  setBatches(batches) {
    this.batches = batches;
    this.offsets = [];
    let n = 0;
    for (const b of batches) {
      this.offsets.push(n);
      n += b.numRows;
    }
    this.rowCount = n;
    this.order = null;
  }

  /** @param {number} row @param {number} column */
  value(row, column) {
    let lo = 0;
    let hi = this.offsets.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offsets[mid] <= row) lo = mid;
      else hi = mid - 1;
    }
    return this.batches[lo]?.getChildAt(column)?.get(row - this.offsets[lo]);
  }

  /** Row number (in arrival order) shown at position `i`. @param {number} i */
  rowAt(i) {
    if (this.sortColumn < 0) return this.live ? this.rowCount - 1 - i : i;
    if (!this.order) {
      const keys = new Array(this.rowCount);
      let r = 0;
      for (const b of this.batches) {
        const vector = b.getChildAt(this.sortColumn);
        for (let k = 0; k < b.numRows; k += 1) keys[r++] = sortKey(vector?.get(k));
      }
      const order = Int32Array.from({ length: this.rowCount }, (_, j) => j);
      const sign = this.sortDescending ? -1 : 1;
      order.sort((a, b) => {
        const c = compare(keys[a], keys[b]);
        // nulls stay last either way; ties keep arrival order
        if (keys[a] === null || keys[b] === null) return c || a - b;
        return sign * c || a - b;
      });
      this.order = order;
    }
    return this.order[i];
  }

  /** @param {number} column */
  sortBy(column) {
    if (this.sortColumn === column) {
      if (!this.sortDescending) this.sortDescending = true;
      else this.sortColumn = -1;
    } else {
      this.sortColumn = column;
      this.sortDescending = false;
    }
    this.order = null;
    this.page = 0;
    this.renderHead();
    this.render();
  }

  renderHead() {
    const head = document.createElement('tr');
    for (const [index, field] of (this.schema?.fields ?? []).entries()) {
      const th = document.createElement('th');
      th.scope = 'col';
      const sorted = this.sortColumn === index;
      th.setAttribute('aria-sort', sorted ? (this.sortDescending ? 'descending' : 'ascending') : 'none');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'sort';
      button.textContent = field.name;
      const arrow = document.createElement('span');
      arrow.className = 'arrow';
      arrow.setAttribute('aria-hidden', 'true');
      arrow.textContent = sorted ? (this.sortDescending ? ' ▼' : ' ▲') : '';
      button.append(arrow);
      button.title = `Sort by ${field.name}`;
      button.addEventListener('click', () => this.sortBy(index));
      const type = document.createElement('span');
      type.className = 'type';
      type.textContent = String(field.type);
      th.append(button, type);
      head.append(th);
    }
    this.table.tHead?.replaceChildren(head);
  }

  /** @param {number} page */
  goTo(page) {
    const pages = Math.max(1, Math.ceil(this.rowCount / TABLE_PAGE_ROWS));
    this.page = Math.min(Math.max(0, page), pages - 1);
    this.render();
  }

  render() {
    const body = this.table.tBodies[0];
    const fields = this.schema?.fields ?? [];
    const pages = Math.max(1, Math.ceil(this.rowCount / TABLE_PAGE_ROWS));
    if (this.page >= pages) this.page = pages - 1;
    const first = this.page * TABLE_PAGE_ROWS;
    const last = Math.min(this.rowCount, first + TABLE_PAGE_ROWS);
    const rows = [];
    for (let i = first; i < last; i += 1) {
      const row = this.rowAt(i);
      const tr = document.createElement('tr');
      for (let c = 0; c < fields.length; c += 1) {
        const type = fields[c].type;
        const value = this.value(row, c);
        const td = document.createElement('td');
        td.textContent = formatCell(value, type);
        if ((typeof value === 'number' || typeof value === 'bigint') && !DataType.isTimestamp(type) && !DataType.isDate(type)) td.className = 'num';
        if (value === null || value === undefined) td.classList.add('muted');
        tr.append(td);
      }
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    const order = this.sortColumn >= 0
      ? `sorted by ${fields[this.sortColumn]?.name} (${this.sortDescending ? 'descending' : 'ascending'})`
      : this.live ? 'newest first' : 'in arrival order';
    this.caption.textContent = this.rowCount ? `${order}` : '';
    if (!this.rowCount) {
      this.pager.replaceChildren();
      return;
    }
    const button = (/** @type {string} */ text, /** @type {string} */ label, /** @type {number} */ page, /** @type {boolean} */ disabled) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'page-button';
      b.textContent = text;
      b.setAttribute('aria-label', label);
      b.disabled = disabled;
      b.addEventListener('click', () => this.goTo(page));
      return b;
    };
    const where = document.createElement('span');
    where.dataset.testid = 'table-range';
    where.textContent = `rows ${(first + 1).toLocaleString('en')}–${last.toLocaleString('en')} of ${this.rowCount.toLocaleString('en')}`;
    this.pager.replaceChildren(
      button('«', 'First page', 0, this.page === 0),
      button('‹', 'Previous page', this.page - 1, this.page === 0),
      where,
      button('›', 'Next page', this.page + 1, this.page >= pages - 1),
      button('»', 'Last page', pages - 1, this.page >= pages - 1),
    );
  }
}
