/**
 * The Block Kit rules Slack enforces on what Warden sends, checked by the fake Web API so
 * that a payload Slack would refuse fails a test too. Written from Slack's Block Kit
 * reference independently of src/slack/blocks.ts (which builds payloads to obey them), so
 * a mistake in one is caught by the other. Errors use Slack's shape: a message and a
 * JSON pointer, e.g. `must be less than 3001 characters [json-pointer:/blocks/0/text/text]`.
 */

export type Surface = 'message' | 'modal' | 'home';

const MAX_BLOCKS: Record<Surface, number> = { message: 50, modal: 100, home: 100 };

type Errors = string[];

function text(errors: Errors, v: any, at: string, max: number, opts: { plainOnly?: boolean } = {}) {
  if (!v || typeof v !== 'object') return void errors.push(`must provide an object [json-pointer:${at}]`);
  if (v.type !== 'plain_text' && v.type !== 'mrkdwn') return void errors.push(`must be a valid enum value [json-pointer:${at}/type]`);
  if (opts.plainOnly && v.type !== 'plain_text') errors.push(`must be a valid enum value [json-pointer:${at}/type]`);
  if (typeof v.text !== 'string' || v.text.length < 1) errors.push(`must be more than 0 characters [json-pointer:${at}/text]`);
  else if (v.text.length > max) errors.push(`must be less than ${max + 1} characters [json-pointer:${at}/text]`);
}

function idString(errors: Errors, v: unknown, at: string) {
  if (typeof v !== 'string' || v.length < 1) errors.push(`must be more than 0 characters [json-pointer:${at}]`);
  else if (v.length > 255) errors.push(`must be less than 256 characters [json-pointer:${at}]`);
}

function element(errors: Errors, e: any, at: string) {
  if (!e || typeof e !== 'object') return void errors.push(`must provide an object [json-pointer:${at}]`);
  if ('action_id' in e || e.type === 'button') idString(errors, e.action_id, `${at}/action_id`);
  if (e.type === 'button') {
    text(errors, e.text, `${at}/text`, 75, { plainOnly: true });
    if (e.value !== undefined && (typeof e.value !== 'string' || e.value.length > 2000)) errors.push(`must be less than 2001 characters [json-pointer:${at}/value]`);
    if (e.url !== undefined && (typeof e.url !== 'string' || e.url.length > 3000)) errors.push(`must be less than 3001 characters [json-pointer:${at}/url]`);
    if (e.style !== undefined && e.style !== 'primary' && e.style !== 'danger') errors.push(`must be a valid enum value [json-pointer:${at}/style]`);
    if (e.confirm) {
      text(errors, e.confirm.title, `${at}/confirm/title`, 100, { plainOnly: true });
      text(errors, e.confirm.text, `${at}/confirm/text`, 300);
      text(errors, e.confirm.confirm, `${at}/confirm/confirm`, 30, { plainOnly: true });
      text(errors, e.confirm.deny, `${at}/confirm/deny`, 30, { plainOnly: true });
    }
  }
  if (Array.isArray(e.options)) {
    if (e.options.length > 100) errors.push(`must provide no more than 100 items [json-pointer:${at}/options]`);
    e.options.forEach((o: any, i: number) => text(errors, o?.text, `${at}/options/${i}/text`, 75));
  }
}

/** Checks a list of blocks; returns Slack's error strings (empty when Slack accepts them). */
export function checkBlocks(blocks: unknown, surface: Surface): string[] {
  const errors: Errors = [];
  if (blocks === undefined) return errors;
  if (!Array.isArray(blocks)) return [`must provide an array [json-pointer:/blocks]`];
  if (blocks.length > MAX_BLOCKS[surface]) errors.push(`must provide no more than ${MAX_BLOCKS[surface]} items [json-pointer:/blocks]`);
  const blockIds = new Set<string>();
  blocks.forEach((b: any, i: number) => {
    const at = `/blocks/${i}`;
    if (!b || typeof b !== 'object') return void errors.push(`must provide an object [json-pointer:${at}]`);
    if (b.block_id !== undefined) {
      idString(errors, b.block_id, `${at}/block_id`);
      if (blockIds.has(b.block_id)) errors.push(`duplicate block_id [json-pointer:${at}/block_id]`);
      blockIds.add(b.block_id);
    }
    switch (b.type) {
      case 'section':
        if (!b.text && !b.fields) errors.push(`must provide either text or fields [json-pointer:${at}]`);
        if (b.text) text(errors, b.text, `${at}/text`, 3000);
        if (b.fields !== undefined) {
          if (!Array.isArray(b.fields) || b.fields.length < 1) errors.push(`must provide at least 1 item [json-pointer:${at}/fields]`);
          else {
            if (b.fields.length > 10) errors.push(`must provide no more than 10 items [json-pointer:${at}/fields]`);
            b.fields.forEach((f: any, j: number) => text(errors, f, `${at}/fields/${j}`, 2000));
          }
        }
        if (b.accessory) element(errors, b.accessory, `${at}/accessory`);
        break;
      case 'header':
        text(errors, b.text, `${at}/text`, 150, { plainOnly: true });
        break;
      case 'context':
        if (!Array.isArray(b.elements) || b.elements.length < 1) errors.push(`must provide at least 1 item [json-pointer:${at}/elements]`);
        else {
          if (b.elements.length > 10) errors.push(`must provide no more than 10 items [json-pointer:${at}/elements]`);
          b.elements.forEach((e: any, j: number) => text(errors, e, `${at}/elements/${j}`, 3000));
        }
        break;
      case 'divider':
        break;
      case 'actions': {
        if (!Array.isArray(b.elements) || b.elements.length < 1) {
          errors.push(`must provide at least 1 item [json-pointer:${at}/elements]`);
          break;
        }
        if (b.elements.length > 25) errors.push(`must provide no more than 25 items [json-pointer:${at}/elements]`);
        // Slack: "action_id … should be unique among all other action_ids in the containing block".
        const ids = new Set<string>();
        b.elements.forEach((e: any, j: number) => {
          element(errors, e, `${at}/elements/${j}`);
          if (typeof e?.action_id === 'string') {
            if (ids.has(e.action_id)) errors.push(`duplicate action_id [json-pointer:${at}/elements/${j}/action_id]`);
            ids.add(e.action_id);
          }
        });
        break;
      }
      case 'input':
        if (surface !== 'modal') errors.push(`input blocks are only allowed in modals [json-pointer:${at}]`);
        text(errors, b.label, `${at}/label`, 2000, { plainOnly: true });
        if (b.hint) text(errors, b.hint, `${at}/hint`, 2000, { plainOnly: true });
        element(errors, b.element, `${at}/element`);
        break;
      default:
        errors.push(`must be a valid enum value [json-pointer:${at}/type]`);
    }
  });
  return errors;
}

/** Checks a view (views.open / update / push / publish). */
export function checkView(view: any): string[] {
  if (!view || typeof view !== 'object') return ['must provide an object [json-pointer:/view]'];
  const surface: Surface = view.type === 'home' ? 'home' : 'modal';
  const errors = checkBlocks(view.blocks ?? [], surface).map((e) => e.replace('[json-pointer:/', '[json-pointer:/view/'));
  if (surface === 'modal') {
    text(errors, view.title, '/view/title', 24, { plainOnly: true });
    if (view.submit) text(errors, view.submit, '/view/submit', 24, { plainOnly: true });
    if (view.close) text(errors, view.close, '/view/close', 24, { plainOnly: true });
  }
  if (typeof view.private_metadata === 'string' && view.private_metadata.length > 3000) {
    errors.push('must be less than 3001 characters [json-pointer:/view/private_metadata]');
  }
  if (view.callback_id !== undefined && typeof view.callback_id === 'string' && view.callback_id.length > 255) {
    errors.push('must be less than 256 characters [json-pointer:/view/callback_id]');
  }
  return errors;
}

/** Slack's answer to a message whose blocks it refuses. */
export function invalidBlocks(errors: string[]): { ok: false; error: 'invalid_blocks'; errors: string[] } {
  return { ok: false, error: 'invalid_blocks', errors };
}
