// Test plugin `js-greeter`, written in JavaScript and built to a component
// with componentize-js (see ../build.mjs): a fail-closed before-write hook
// on contact creates that fills an empty `title` with "Friend" and refuses
// `first_name: "reject-me"`, and an action `greet` that answers
// "<prefix>, <name>!" (config `{"prefix": "..."}`, default "Hello").
//
// WIT to JS, as componentize-js maps it: records are objects with
// camelCase keys, variants `{ tag, val }`, enums kebab-case strings,
// `option<T>` is `T | undefined`, 64-bit integers are BigInts, and a
// `result<T, E>` export returns T or throws E. Throw the string itself: a
// thrown `Error` object is not converted to an error result, it traps.

import { log } from 'crm:plugin/log@0.1.0';

const DEFAULT_PREFIX = 'Hello';

function fieldDecl(name, kind, required, description) {
  return { name, kind, required, unique: false, indexed: false, description, options: [], target: undefined };
}

function manifest() {
  return {
    id: 'js-greeter',
    version: '0.1.0',
    api: '0.1.0',
    description: 'Greets people; fills in a missing contact title (a JavaScript test plugin)',
    objects: [],
    fields: [],
    hooks: [{ kind: 'before-write', object: 'contact', ops: ['create'], failure: 'fail-closed' }],
    actions: [
      {
        name: 'greet',
        description: 'Greets someone by name',
        input: [fieldDecl('name', 'text', true, 'Who to greet')],
        output: [fieldDecl('greeting', 'text', false, 'The greeting')],
      },
    ],
    routes: [],
    capabilities: {
      records: [
        { object: 'contact', fields: ['first_name', 'title'], read: true, create: true, update: true, delete: false },
      ],
      outbound: [],
      timers: false,
      kv: false,
      events: false,
      schema: false,
    },
    limits: { fuel: 0n, timeoutMs: 0, memoryBytes: 0n, hostCalls: 0, outputBytes: 0, logBytes: 0 },
    configSchema: JSON.stringify({
      type: 'object',
      properties: { prefix: { type: 'string', default: DEFAULT_PREFIX } },
      additionalProperties: false,
    }),
  };
}

/** The text of field `name` in a list of fields, or undefined. */
function text(fields, name) {
  const field = fields.find((field) => field.name === name);
  return field && field.value.tag === 'text' ? field.value.val : undefined;
}

function decide(change) {
  if (text(change.after, 'first_name') === 'reject-me') {
    return { tag: 'reject', val: { field: 'first_name', message: 'js says no' } };
  }
  const title = text(change.after, 'title');
  if (title === undefined || title.trim() === '') {
    return { tag: 'patch', val: [{ name: 'title', value: { tag: 'text', val: 'Friend' } }] };
  }
  return { tag: 'accept' };
}

function prefixOf(ctx) {
  const config = ctx.config.trim() === '' ? {} : JSON.parse(ctx.config);
  return typeof config.prefix === 'string' ? config.prefix : DEFAULT_PREFIX;
}

function invoke(ctx, action, input) {
  if (action !== 'greet') {
    throw `unknown action '${action}'`;
  }
  const name = text(input, 'name');
  if (name === undefined || name.trim() === '') {
    // The host checks the declared input first, so only an empty name gets here.
    throw 'greet needs a name';
  }
  const greeting = `${prefixOf(ctx)}, ${name}!`;
  log('info', `greeted ${name} for tenant ${ctx.tenant}`);
  return [{ name: 'greeting', value: { tag: 'text', val: greeting } }];
}

export const plugin = {
  manifest,
  tenantSchema(ctx) {
    return { objects: [], fields: [] };
  },
  beforeWrite(ctx, changes) {
    return changes.map(decide);
  },
  afterCommit(ctx, events) {},
  onTimer(ctx, key, payload) {},
  invoke,
  http(ctx, request) {
    return { status: 404, headers: [], body: new Uint8Array() };
  },
};
