import { cleanText, md, textOf, type Block, type Button, type Message, type Modal, type ModalField, type ModalValues, type Text } from '../ui.js';

/**
 * Turns Warden's message and modal model into Block Kit, enforcing Slack's limits here
 * once, so that no message fails to post however long its content: text is cut with a
 * marker, lists of blocks are capped with a closing note.
 */

export const LIMITS = {
  messageBlocks: 50,
  modalBlocks: 100,
  sectionText: 3000,
  fieldText: 2000,
  fields: 10,
  headerText: 150,
  buttonText: 75,
  buttonValue: 2000,
  actionsElements: 25,
  contextText: 2000,
  fallbackText: 3000,
  modalTitle: 24,
  privateMetadata: 3000,
  optionText: 75,
  options: 100,
};

export const TRUNCATION_MARK = '… (truncated)';

export function truncate(text: string, max: number, mark = TRUNCATION_MARK): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, Math.max(0, max - mark.length));
  // Don't leave a half-open code span or formatting that would garble the rest.
  return cut + mark;
}

/** plain_text is shown as it is; control and bidi characters are removed, empty becomes a space. */
const plain = (text: string, max: number) => ({ type: 'plain_text', text: truncate(cleanText(text ?? '', true) || ' ', max, '…'), emoji: true });
/** A mrkdwn text object: from built `Mrkdwn`, or from a piece of one (a long text split here). */
const mrkdwn = (text: Text | { piece: string }, max: number) => ({
  type: 'mrkdwn',
  text: truncate((typeof text === 'object' && 'piece' in text ? text.piece : textOf(text)) || ' ', max),
});

function button(b: Button) {
  return {
    type: 'button',
    action_id: b.actionId,
    text: plain(b.text, LIMITS.buttonText),
    ...(b.url ? { url: b.url } : { value: b.value.slice(0, LIMITS.buttonValue) }),
    ...(b.style ? { style: b.style } : {}),
    ...(b.confirm
      ? {
          confirm: {
            title: plain(b.confirm.title, 100),
            text: mrkdwn(b.confirm.text, 300),
            confirm: plain(b.confirm.confirm, 30),
            deny: plain(b.confirm.deny ?? 'Cancel', 30),
          },
        }
      : {}),
  };
}

/** Splits long text into several sections at line breaks rather than cutting it. */
function sections(t: Text): object[] {
  const out: object[] = [];
  let rest = textOf(t);
  while (rest.length > LIMITS.sectionText) {
    let at = rest.lastIndexOf('\n', LIMITS.sectionText);
    if (at < LIMITS.sectionText / 2) at = LIMITS.sectionText;
    out.push({ type: 'section', text: mrkdwn({ piece: rest.slice(0, at) }, LIMITS.sectionText) });
    rest = rest.slice(at).replace(/^\n/, '');
  }
  out.push({ type: 'section', text: mrkdwn({ piece: rest }, LIMITS.sectionText) });
  return out;
}

function toBlockKit(block: Block, actionIndex: number): object[] {
  switch (block.type) {
    case 'header':
      return [{ type: 'header', text: plain(block.text, LIMITS.headerText) }];
    case 'text':
      return sections(block.text);
    case 'fields': {
      const out: object[] = [];
      for (let i = 0; i < block.fields.length; i += LIMITS.fields) {
        out.push({
          type: 'section',
          fields: block.fields.slice(i, i + LIMITS.fields).map((f) => mrkdwn(f, LIMITS.fieldText)),
        });
      }
      return out;
    }
    case 'context':
      return [{ type: 'context', elements: [mrkdwn(block.text, LIMITS.contextText)] }];
    case 'divider':
      return [{ type: 'divider' }];
    case 'buttons': {
      if (!block.buttons.length) return [];
      // Slack refuses a block in which two elements share an action_id (invalid_blocks):
      // a programming error, so it fails loudly here (and in every test) rather than in Slack.
      const seen = new Set<string>();
      for (const b of block.buttons) {
        if (seen.has(b.actionId)) throw new Error(`two buttons in one block share the action id '${b.actionId}'; Slack would refuse the message`);
        seen.add(b.actionId);
      }
      return [
        {
          type: 'actions',
          block_id: `actions_${actionIndex}`,
          elements: block.buttons.slice(0, LIMITS.actionsElements).map(button),
        },
      ];
    }
  }
}

export function messageBlocks(message: Message, maxBlocks = LIMITS.messageBlocks): object[] {
  const out: object[] = [];
  let actionIndex = 0;
  for (const b of message.blocks ?? []) out.push(...toBlockKit(b, actionIndex++));
  if (out.length <= maxBlocks) return out;
  // Keep the last actions block (the buttons people need) when cutting.
  const lastActions = [...out].reverse().find((b: any) => b.type === 'actions');
  const keep = out.slice(0, maxBlocks - (lastActions ? 2 : 1));
  keep.push({ type: 'context', elements: [mrkdwn(md.text(`${out.length - keep.length} more blocks not shown ${TRUNCATION_MARK}`), 200)] });
  if (lastActions) keep.push(lastActions);
  return keep;
}

/** Arguments for chat.postMessage / chat.update / respond. */
export function messagePayload(message: Message): { text: string; blocks?: object[] } {
  const text = truncate(textOf(message.text) || ' ', LIMITS.fallbackText);
  return message.blocks?.length ? { text, blocks: messageBlocks(message) } : { text, blocks: sections(message.text) };
}

function fieldElement(f: ModalField) {
  const options = (f.options ?? []).slice(0, LIMITS.options).map((o) => ({
    text: plain(o.label, LIMITS.optionText),
    value: o.value,
  }));
  const initialOption = (v?: string) => options.find((o) => o.value === v);
  switch (f.kind) {
    case 'text':
    case 'multiline':
      return {
        type: 'plain_text_input',
        action_id: 'value',
        multiline: f.kind === 'multiline',
        ...(f.placeholder ? { placeholder: plain(f.placeholder, 150) } : {}),
        ...(typeof f.initial === 'string' && f.initial ? { initial_value: f.initial } : {}),
        ...(f.maxLength ? { max_length: f.maxLength } : {}),
      };
    case 'select': {
      const init = initialOption(typeof f.initial === 'string' ? f.initial : undefined);
      return {
        type: 'static_select',
        action_id: 'value',
        options,
        ...(f.placeholder ? { placeholder: plain(f.placeholder, 150) } : {}),
        ...(init ? { initial_option: init } : {}),
      };
    }
    case 'radio': {
      const init = initialOption(typeof f.initial === 'string' ? f.initial : undefined);
      return { type: 'radio_buttons', action_id: 'value', options, ...(init ? { initial_option: init } : {}) };
    }
    case 'checkboxes': {
      const inits = (Array.isArray(f.initial) ? f.initial : []).map(initialOption).filter(Boolean);
      return { type: 'checkboxes', action_id: 'value', options, ...(inits.length ? { initial_options: inits } : {}) };
    }
  }
}

/** A modal view for views.open. `metadata` is Warden's envelope (see router). */
export function modalView(modal: Modal, privateMetadata: string): object {
  const blocks: object[] = [];
  if (modal.intro) blocks.push(...sections(modal.intro));
  for (const f of modal.fields) {
    blocks.push({
      type: 'input',
      block_id: f.id,
      optional: !!f.optional,
      label: plain(f.label, 2000),
      element: fieldElement(f),
      ...(f.hint ? { hint: plain(f.hint, 2000) } : {}),
    });
  }
  return {
    type: 'modal',
    callback_id: modal.callbackId,
    title: plain(modal.title, LIMITS.modalTitle),
    ...(modal.fields.length ? { submit: plain(modal.submit ?? 'Submit', 24) } : {}),
    close: plain(modal.close ?? 'Cancel', 24),
    private_metadata: privateMetadata.slice(0, LIMITS.privateMetadata),
    blocks: blocks.slice(0, LIMITS.modalBlocks),
  };
}

/** Reads submitted values (view.state.values) back into Warden's simple shape. */
export function readModalValues(state: Record<string, Record<string, any>> | undefined): ModalValues {
  const out: ModalValues = {};
  for (const [blockId, actions] of Object.entries(state ?? {})) {
    const v = actions.value ?? Object.values(actions)[0];
    if (!v) continue;
    if (v.type === 'checkboxes') out[blockId] = (v.selected_options ?? []).map((o: any) => o.value);
    else if (v.type === 'static_select' || v.type === 'radio_buttons') out[blockId] = v.selected_option?.value ?? undefined;
    else out[blockId] = v.value ?? undefined;
  }
  return out;
}
