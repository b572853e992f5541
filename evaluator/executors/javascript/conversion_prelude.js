// Evaluated once in the zygote (see javascript_runtime.cc). It is an expression: a function that
// receives the native output sink and returns the per-call driver. Everything here implements
// evaluator-api.md §5.2/§5.3 (ZObject <-> JavaScript conversions) and the console.
// It must never call Math.random: the zygote's RNG state would be shared by every child.
(function (writeOutput) {
  'use strict';
  const global = globalThis;
  // Captured now, so that user code that replaces globals cannot break the driver's own work.
  const geval = global.eval;
  const jsonParse = JSON.parse;
  const jsonStringify = JSON.stringify;
  const objectKeys = Object.keys;
  const getPrototypeOf = Object.getPrototypeOf;
  const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const isArray = Array.isArray;
  const NativeMap = Map;
  const NativeSet = Set;
  const NativeString = String;
  const NativeError = Error;
  const NativeRangeError = RangeError;

  // ---------------------------------------------------------------------------------------
  // Value classes visible to user code.
  class ZPair {
    constructor(K1, K2, Z1K1 = null) {
      this.Z1K1 = Z1K1;
      this.K1 = K1;
      this.K2 = K2;
    }
  }

  class ZObject {
    // kwargs: a Map (as the reference executor takes it) or a plain object of key -> value.
    constructor(kwargs = new NativeMap(), Z1K1 = null) {
      this.Z1K1 = Z1K1;
      const entries = kwargs instanceof NativeMap ? kwargs.entries() : Object.entries(kwargs ?? {});
      for (const [key, value] of entries) {
        this[key] = value;
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // A small util.inspect look-alike: error texts quote it (`Could not serialize input JS object:
  // A {}`), and console.log formats non-strings with it.
  const identifierRe = /^[A-Za-z_$][\w$]*$/;

  function quote(s) {
    return "'" + s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n') + "'";
  }

  function joinEntries(prefix, entries, open, close) {
    if (entries.length === 0) {
      return prefix + open + close;
    }
    let total = prefix.length + entries.length;
    let multiline = false;
    for (const e of entries) {
      total += e.length;
      if (e.includes('\n')) {
        multiline = true;
      }
    }
    if (!multiline && total + 4 <= 80) {
      return prefix + open + ' ' + entries.join(', ') + ' ' + close;
    }
    const indented = entries.map((e) => '  ' + e.replace(/\n/g, '\n  '));
    return prefix + open + '\n' + indented.join(',\n') + '\n' + close;
  }

  function inspect(value, depth = 0, seen = new NativeSet()) {
    switch (typeof value) {
      case 'string':
        return depth === 0 ? value : quote(value);
      case 'number':
        return Object.is(value, -0) ? '-0' : NativeString(value);
      case 'bigint':
        return NativeString(value) + 'n';
      case 'boolean':
      case 'undefined':
        return NativeString(value);
      case 'symbol':
        return value.toString();
      case 'function': {
        const src = Function.prototype.toString.call(value);
        if (src.startsWith('class')) {
          return '[class ' + (value.name || '(anonymous)') + ']';
        }
        return value.name ? '[Function: ' + value.name + ']' : '[Function (anonymous)]';
      }
      default:
        break;
    }
    if (value === null) {
      return 'null';
    }
    if (seen.has(value)) {
      return '[Circular]';
    }
    const proto = getPrototypeOf(value);
    let name = 'Object';
    if (proto === null) {
      name = '[Object: null prototype]';
    } else {
      const ctor = getOwnPropertyDescriptor(proto, 'constructor');
      if (ctor && typeof ctor.value === 'function' && typeof ctor.value.name === 'string') {
        name = ctor.value.name || 'Object';
      }
    }
    if (value instanceof NativeError) {
      return (value.stack && NativeString(value.stack).length > 0)
        ? NativeString(value.name) + ': ' + NativeString(value.message) + '\n' + NativeString(value.stack).trimEnd()
        : NativeString(value.name) + ': ' + NativeString(value.message);
    }
    if (value instanceof Date) {
      return isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString();
    }
    if (value instanceof RegExp) {
      return value.toString();
    }
    if (value instanceof Promise) {
      return 'Promise { <unknown> }';
    }
    if (depth > 2) {
      return isArray(value) ? '[Array]' : '[' + name + ']';
    }
    seen.add(value);
    const entries = [];
    let prefix;
    let open = '{';
    let close = '}';
    if (isArray(value)) {
      prefix = name === 'Array' ? '' : name + '(' + value.length + ') ';
      open = '[';
      close = ']';
      const shown = Math.min(value.length, 100);
      for (let i = 0; i < shown; i++) {
        entries.push(i in value ? inspect(value[i], depth + 1, seen) : '<empty item>');
      }
      if (value.length > shown) {
        entries.push('... ' + (value.length - shown) + ' more items');
      }
    } else if (value instanceof NativeMap) {
      prefix = name + '(' + value.size + ') ';
      for (const [k, v] of value) {
        entries.push(inspect(k, depth + 1, seen) + ' => ' + inspect(v, depth + 1, seen));
      }
    } else if (value instanceof NativeSet) {
      prefix = name + '(' + value.size + ') ';
      for (const v of value) {
        entries.push(inspect(v, depth + 1, seen));
      }
    } else {
      prefix = name === 'Object' ? '' : name + ' ';
      for (const key of objectKeys(value)) {
        const desc = getOwnPropertyDescriptor(value, key);
        const shownKey = identifierRe.test(key) ? key : quote(key);
        let shownValue;
        if (desc === undefined) {
          continue;
        } else if ('value' in desc) {
          shownValue = inspect(desc.value, depth + 1, seen);
        } else {
          shownValue = desc.set ? (desc.get ? '[Getter/Setter]' : '[Setter]') : '[Getter]';
        }
        entries.push(shownKey + ': ' + shownValue);
      }
    }
    seen.delete(value);
    return joinEntries(prefix, entries, open, close);
  }

  // ---------------------------------------------------------------------------------------
  // console: captured by the runtime (bounded there), never mixed into the result.
  function format(args) {
    let out = '';
    for (let i = 0; i < args.length; i++) {
      out += (i === 0 ? '' : ' ') + inspect(args[i]);
    }
    return out + '\n';
  }
  const console = {};
  for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
    console[method] = function (...args) {
      writeOutput(format(args));
    };
  }
  console.dir = function (value) {
    writeOutput(inspect(value) + '\n');
  };
  Object.defineProperty(global, 'console', {value: console, writable: true, configurable: true});

  // ---------------------------------------------------------------------------------------
  // ZObject -> JavaScript (evaluator-api.md §5.3).
  function unconvertible() {
    // What the reference executor reported for Z9 references and other non-objects (a stack
    // overflow in its type lookup); kept so errors look the same.
    return new NativeRangeError('Maximum call stack size exceeded');
  }

  function isObject(x) {
    return x !== null && typeof x === 'object' && !isArray(x);
  }

  // The type ZID of a Z1K1 value: bare string -> itself; Z9 -> Z9K1; Z7 -> ZID of its Z7K1;
  // literal Z4 -> ZID of Z4K1; literal Z8 -> its Z8K5.
  function typeZid(t, depth = 0) {
    if (typeof t === 'string') {
      return t;
    }
    if (!isObject(t) || depth > 64) {
      throw unconvertible();
    }
    const kind = t.Z1K1;
    if (kind === 'Z9') {
      if (typeof t.Z9K1 === 'string') {
        return t.Z9K1;
      }
      throw unconvertible();
    }
    const kindZid = typeZid(kind, depth + 1);
    if (kindZid === 'Z7') {
      return typeZid(t.Z7K1, depth + 1);
    }
    if (kindZid === 'Z4') {
      return typeZid(t.Z4K1, depth + 1);
    }
    if (kindZid === 'Z8') {
      return typeZid(t.Z8K5, depth + 1);
    }
    throw unconvertible();
  }

  function deserializeList(z) {
    const result = [];
    let tail = z;
    while (isObject(tail) && tail.K1 !== undefined) {
      result.push(deserialize(tail.K1));
      tail = tail.K2;
    }
    return result;
  }

  function deserialize(z) {
    if (Array.isArray(z)) {
      // A typed list written as an array, [element type, elements...] (docs/compatibility.md
      // "Long lists"): what our orchestrator sends for long list arguments.
      return z.slice(1).map(deserialize);
    }
    if (isObject(z) && z.Z1K1 === 'Z9' && typeof z.Z9K1 === 'string') {
      // A reference (e.g. an enum value passed to an argument typed Z1): a ZObject whose Z1K1 is
      // 'Z9' and Z9K1 the ZID; returned, it stays a reference.
      return new ZObject({Z9K1: z.Z9K1}, 'Z9');
    }
    if (!isObject(z) || z.Z1K1 === 'Z9') {
      throw unconvertible();
    }
    switch (typeZid(z.Z1K1)) {
      case 'Z6':
        return z.Z6K1;
      case 'Z21':
        return null;
      case 'Z40': {
        const v = z.Z40K1;
        return (isObject(v) ? v.Z9K1 : v) === 'Z41';
      }
      case 'Z881':
        return deserializeList(z);
      case 'Z882':
        return new ZPair(deserialize(z.K1), deserialize(z.K2), z.Z1K1);
      case 'Z883': {
        const map = new NativeMap();
        if (z.K1 !== undefined) {
          for (const pair of deserializeList(z.K1)) {
            map.set(pair.K1, pair.K2);
          }
        }
        return map;
      }
      default: {
        const kwargs = new NativeMap();
        for (const key of objectKeys(z)) {
          if (key !== 'Z1K1') {
            kwargs.set(key, deserialize(z[key]));
          }
        }
        return new ZObject(kwargs, z.Z1K1);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // JavaScript -> ZObject (normal form).
  function ref(zid) {
    return {Z1K1: 'Z9', Z9K1: zid};
  }
  function soupUp(type) {
    return typeof type === 'string' ? ref(type) : type;
  }
  function listType(itemType) {
    return {Z1K1: ref('Z7'), Z7K1: ref('Z881'), Z881K1: itemType};
  }
  function pairType(k, v) {
    return {Z1K1: ref('Z7'), Z7K1: ref('Z882'), Z882K1: k, Z882K2: v};
  }
  function mapType(k, v) {
    return {Z1K1: ref('Z7'), Z7K1: ref('Z883'), Z883K1: k, Z883K2: v};
  }

  // A canonical text for comparing types (key order ignored).
  function stableText(x) {
    if (isArray(x)) {
      return '[' + x.map(stableText).join(',') + ']';
    }
    if (x !== null && typeof x === 'object') {
      return '{' + objectKeys(x).sort().map((k) => jsonStringify(k) + ':' + stableText(x[k])).join(',') + '}';
    }
    return jsonStringify(x) ?? 'null';
  }

  // The common type of serialized items, or Z1; references to Z7/Z9/Z18 are never inferred.
  function commonType(types) {
    if (types.length === 0) {
      return ref('Z1');
    }
    const first = soupUp(types[0]);
    const text = stableText(first);
    for (let i = 1; i < types.length; i++) {
      if (stableText(soupUp(types[i])) !== text) {
        return ref('Z1');
      }
    }
    if (first !== null && typeof first === 'object' && first.Z1K1 === 'Z9' &&
        (first.Z9K1 === 'Z7' || first.Z9K1 === 'Z9' || first.Z9K1 === 'Z18')) {
      return ref('Z1');
    }
    return first;
  }

  // A result list longer than this is written as the array [element type, elements...] (the
  // canonical list form; docs/compatibility.md "Long lists"): in normal form it nests one level
  // per element, deeper than JSON.stringify can recurse and the evaluator's decoder accepts.
  const longList = 64;

  // A typed list of serialized items; `flat` (results): a long one as [element type, items...].
  function resultList(items, flat) {
    const itemType = commonType(items.map((i) => i.Z1K1));
    return flat && items.length > longList ? [itemType, ...items] : buildList(items, listType(itemType));
  }

  function buildList(items, type) {
    const result = {Z1K1: type};
    let tail = result;
    for (const item of items) {
      tail.K1 = item;
      tail.K2 = {Z1K1: type};
      tail = tail.K2;
    }
    return result;
  }

  function cannotSerialize(value) {
    return new NativeError('Could not serialize input JS object: ' + inspect(value));
  }

  function serialize(value) {
    if (typeof value === 'string' || value instanceof NativeString) {
      return {Z1K1: 'Z6', Z6K1: NativeString(value)};
    }
    if (value === null) {
      return {Z1K1: ref('Z21')};
    }
    if (typeof value === 'boolean' || value instanceof Boolean) {
      return {Z1K1: ref('Z40'), Z40K1: ref(value.valueOf() ? 'Z41' : 'Z42')};
    }
    if (isArray(value)) {
      const items = [];
      for (const item of value) {
        items.push(serialize(item));
      }
      return resultList(items, true);
    }
    if (value instanceof ZPair) {
      const k1 = serialize(value.K1);
      const k2 = serialize(value.K2);
      const type = value.Z1K1 ?? pairType(soupUp(k1.Z1K1), soupUp(k2.Z1K1));
      return {Z1K1: type, K1: k1, K2: k2};
    }
    if (value instanceof NativeMap) {
      const keys = [];
      const values = [];
      for (const [k, v] of value) {
        keys.push(serialize(k));
        values.push(serialize(v));
      }
      const keyType = commonType(keys.map((k) => k.Z1K1));
      const valueType = commonType(values.map((v) => v.Z1K1));
      const entryType = pairType(keyType, valueType);
      const pairs = keys.map((k, i) => ({Z1K1: entryType, K1: k, K2: values[i]}));
      const list = pairs.length > longList ? [entryType, ...pairs] : buildList(pairs, listType(entryType));
      return {Z1K1: mapType(keyType, valueType), K1: list};
    }
    if (value instanceof ZObject && value.Z1K1 === 'Z9' && typeof value.Z9K1 === 'string') {
      return ref(value.Z9K1);
    }
    if (value instanceof ZObject && value.Z1K1 !== null && value.Z1K1 !== undefined) {
      const result = {Z1K1: value.Z1K1};
      for (const key of objectKeys(value)) {
        if (key !== 'Z1K1') {
          result[key] = serialize(value[key]);
        }
      }
      return result;
    }
    throw cannotSerialize(value);
  }

  // ---------------------------------------------------------------------------------------
  // The per-call driver. Returns 'R' + JSON of the serialized result, 'E' + error message, or 'Z' +
  // a whole Z22 (when Wikifunctions.Debug added lines).
  function messageOf(e) {
    try {
      if (e !== null && (typeof e === 'object' || typeof e === 'function')) {
        const m = e.message;
        if (typeof m === 'string') {
          return m;
        }
      }
      return NativeString(e);
    } catch (inner) {
      return 'uncaught exception';
    }
  }

  // ---------------------------------------------------------------------------------------
  // Wikifunctions.Debug: lines for the metadata key executorDebugLogs, bounded like the console.
  const maxDebugEntries = 100;
  let debugLines = [];
  let debugLeft = 0;
  let debugTruncated = false;
  const Wikifunctions = {
    Debug(...values) {
      if (debugTruncated) {
        return;
      }
      const text = values.map((v) => (typeof v === 'string' ? v : inspect(v))).join(' ');
      if (debugLines.length >= maxDebugEntries || text.length > debugLeft) {
        debugLines.push('... (debug log truncated)');
        debugTruncated = true;
        return;
      }
      debugLines.push(text);
      debugLeft -= text.length;
    },
    Call() {
      throw new NativeError('Non-reentrant executor tried to call back to the orchestrator');
    },
  };

  function metadataMap(entries) {
    const pair = pairType(ref('Z6'), ref('Z1'));
    const pairs = entries.map(([key, value]) => ({Z1K1: pair, K1: {Z1K1: 'Z6', Z6K1: key}, K2: value}));
    return {Z1K1: mapType(ref('Z6'), ref('Z1')), K1: buildList(pairs, listType(pair))};
  }

  // The whole Z22 when there are debug lines (the native side builds it otherwise).
  function z22WithDebug(value, message) {
    const lines = debugLines.map((line) => ({Z1K1: 'Z6', Z6K1: line}));
    const entries = [['executorDebugLogs', buildList(lines, listType(ref('Z6')))]];
    if (value === undefined) {
      entries.unshift(['errors', {Z1K1: ref('Z5'), Z5K2: {Z1K1: 'Z6', Z6K1: message}}]);
    }
    return 'Z' + jsonStringify({Z1K1: ref('Z22'), Z22K1: value === undefined ? ref('Z24') : value,
      Z22K2: metadataMap(entries)});
  }

  // ---------------------------------------------------------------------------------------
  // Type converters (docs/compatibility.md "Type converters"): a plan is {converter:
  // {functionName, code}}, {list: plan} (each element), {pair: [plan, plan]} (K1 and K2 of a
  // Z882), {map: [plan, plan]} (keys and values of a Z883), {keys: {key: plan}} (the keys of an
  // instance of a type without a converter of its own) or {native: ...} (results declared Z1); a
  // null plan is the default conversion.
  function converterFunction(converter, cache) {
    const key = converter.functionName + '\u0000' + converter.code;
    if (!cache.has(key)) {
      const wrapper = geval('(function () {"use strict";' + converter.code + '\n;return ' +
        converter.functionName + ';\n})');
      const fn = wrapper();
      if (typeof fn !== 'function') {
        throw new TypeError('Type converter ' + converter.functionName + ' defines no function');
      }
      cache.set(key, fn);
    }
    return cache.get(key);
  }

  function applyConverter(converter, value, cache) {
    const fn = converterFunction(converter, cache);
    try {
      return fn(value);
    } catch (e) {
      throw new NativeError('Type converter ' + converter.functionName + ' failed: ' + messageOf(e));
    }
  }

  // The elements of a typed list in normal form, or written as [element type, elements...].
  function listElements(z) {
    if (isArray(z)) {
      return z.slice(1);
    }
    const items = [];
    let tail = z;
    while (isObject(tail) && tail.K1 !== undefined) {
      items.push(tail.K1);
      tail = tail.K2;
    }
    return items;
  }

  // The [first, second] plans of a pair or map plan; anything else: both default.
  function twoPlans(plans) {
    return isArray(plans) && plans.length === 2 ? plans : [null, null];
  }

  function toNative(plan, z, cache) {
    if (!isObject(plan)) {
      return deserialize(z);
    }
    if (isObject(plan.converter)) {
      return applyConverter(plan.converter, z, cache);
    }
    if (isObject(plan.list)) {
      return listElements(z).map((item) => toNative(plan.list, item, cache));
    }
    if (!isObject(z) || z.Z1K1 === 'Z9') {
      return deserialize(z);
    }
    if (plan.pair !== undefined) {
      const [first, second] = twoPlans(plan.pair);
      return new ZPair(toNative(first, z.K1, cache), toNative(second, z.K2, cache), z.Z1K1);
    }
    if (plan.map !== undefined) {
      const entry = {pair: twoPlans(plan.map)};
      const map = new NativeMap();
      for (const item of listElements(z.K1)) {
        const pair = toNative(entry, item, cache);
        map.set(pair.K1, pair.K2);
      }
      return map;
    }
    if (isObject(plan.keys)) {
      const kwargs = new NativeMap();
      for (const key of objectKeys(z)) {
        if (key !== 'Z1K1') {
          kwargs.set(key, toNative(plan.keys[key], z[key], cache));
        }
      }
      return new ZObject(kwargs, z.Z1K1);
    }
    return deserialize(z);
  }

  // The Z1K1 of a serialized value (a long list written as an array: its list type).
  function typeOf(z) {
    return isArray(z) ? listType(z[0]) : z.Z1K1;
  }

  // A ZPair as a Z882 whose K1 and K2 follow `plans`.
  function pairFromNative(plans, value, cache) {
    if (!(value instanceof ZPair)) {
      throw cannotSerialize(value);
    }
    const k1 = fromNative(plans[0], value.K1, cache);
    const k2 = fromNative(plans[1], value.K2, cache);
    const type = value.Z1K1 ?? pairType(soupUp(typeOf(k1)), soupUp(typeOf(k2)));
    return {Z1K1: type, K1: k1, K2: k2};
  }

  function mapFromNative(plans, value, cache) {
    if (!(value instanceof NativeMap)) {
      throw cannotSerialize(value);
    }
    const pairs = [];
    for (const [k, v] of value) {
      pairs.push(pairFromNative(plans, new ZPair(k, v), cache));
    }
    const keyType = commonType(pairs.map((p) => typeOf(p.K1)));
    const valueType = commonType(pairs.map((p) => typeOf(p.K2)));
    const entryType = pairType(keyType, valueType);
    for (const p of pairs) {
      p.Z1K1 = entryType;
    }
    const list = pairs.length > longList ? [entryType, ...pairs] : buildList(pairs, listType(entryType));
    return {Z1K1: mapType(keyType, valueType), K1: list};
  }

  function fromNative(plan, value, cache) {
    if (isObject(plan) && isObject(plan.converter)) {
      const z = applyConverter(plan.converter, value, cache);
      if (!isObject(z) || z.Z1K1 === undefined) {
        throw new TypeError('Type converter ' + plan.converter.functionName +
          ' returned something that is not a ZObject (an object with Z1K1)');
      }
      return z;
    }
    if (isObject(plan) && isObject(plan.list)) {
      if (!isArray(value)) {
        throw cannotSerialize(value);
      }
      return resultList(value.map((item) => fromNative(plan.list, item, cache)), true);
    }
    if (isObject(plan) && plan.pair !== undefined) {
      return pairFromNative(twoPlans(plan.pair), value, cache);
    }
    if (isObject(plan) && plan.map !== undefined) {
      return mapFromNative(twoPlans(plan.map), value, cache);
    }
    if (isObject(plan) && isObject(plan.keys) && value instanceof ZObject &&
        value.Z1K1 !== null && value.Z1K1 !== undefined && value.Z1K1 !== 'Z9') {
      const result = {Z1K1: value.Z1K1};
      for (const key of objectKeys(value)) {
        if (key !== 'Z1K1') {
          result[key] = fromNative(plan.keys[key], value[key], cache);
        }
      }
      return result;
    }
    if (isObject(plan) && isObject(plan.native)) {
      // A result declared Z1: the plan of the value's native type (Z64K4: 'BigInt', ...).
      const name = typeof value === 'bigint' ? 'BigInt'
        : (value !== null && value !== undefined && value.constructor ? value.constructor.name : '');
      // A negative number: the plan named '-' + its type first (Natural number vs Integer).
      const negative = (typeof value === 'bigint' && value < 0n) || (typeof value === 'number' && value < 0);
      const signed = negative && typeof name === 'string' ? plan.native['-' + name] : null;
      const chosen = isObject(signed) ? signed
        : (typeof name === 'string' && isObject(plan.native[name]) ? plan.native[name] : null);
      if (chosen) {
        return fromNative(chosen, value, cache);
      }
      // The elements of an array each by their own native type.
      return isArray(value) ? resultList(value.map((item) => fromNative(plan, item, cache)), true)
        : serialize(value);
    }
    return serialize(value);
  }

  function orderedArguments(argumentsJson, plans, cache) {
    const args = jsonParse(argumentsJson);
    if (!isObject(args)) {
      return [];
    }
    // Positional, in lexicographic (UTF-16 code unit) order of the keys: Z1K10 < Z1K2.
    return objectKeys(args).sort().map((key) => toNative(plans[key], args[key], cache));
  }

  global.ZObject = ZObject;
  global.ZPair = ZPair;
  global.serialize = serialize;
  global.deserialize = deserialize;
  global.Wikifunctions = Wikifunctions;

  return async function run(code, functionName, argumentsJson, convertersJson, debugLimit) {
    debugLines = [];
    debugLeft = debugLimit;
    debugTruncated = false;
    try {
      const converters = convertersJson ? jsonParse(convertersJson) : {};
      const plans = isObject(converters.arguments) ? converters.arguments : {};
      const cache = new NativeMap();
      // Like the reference, the code becomes the body of an async function (so top-level
      // `await` works); strict mode as in the reference's module.
      const wrapper = geval('(async function () {"use strict";' + code + '\n;return ' + functionName + ';\n})');
      const fn = await wrapper();
      if (typeof fn !== 'function') {
        throw new TypeError(functionName + ' is not a function');
      }
      const values = orderedArguments(argumentsJson, plans, cache);
      let result = fn(...values);
      // Deliberate fix: a returned Promise (async function) is awaited.
      if (result instanceof Promise) {
        result = await result;
      }
      const z = fromNative(converters.result, result, cache);
      return debugLines.length > 0 ? z22WithDebug(z) : 'R' + jsonStringify(z);
    } catch (e) {
      return debugLines.length > 0 ? z22WithDebug(undefined, messageOf(e)) : 'E' + messageOf(e);
    }
  };
})
