// A worker's assigned partitions ("topic/partition" strings) told compactly, per queue:
// "email: 0, 2, 4 · tiers: 0, 2, 4". Pure: no DOM, no fetch (tests call it in the browser).

const LANES = ["high", "normal", "low"];

// topic -> {queue, lane, tier} from the queues' figures (their `lanes`), which know the topic prefix.
export function topicIndex(queues) {
  const index = new Map();
  for (const q of queues) {
    for (const lane of q.lanes || []) index.set(lane.topic, { queue: q.queue, lane: lane.lane, tier: lane.tier });
  }
  return index;
}

// A topic no queue of this app lists (another app's worker): told from its name.
function guess(topic) {
  const tier = /^(.+)\.delay\.([^.]+)$/.exec(topic);
  if (tier) return { queue: tier[1], lane: "", tier: tier[2] };
  const lane = /^(.+)\.(high|low)$/.exec(topic);
  if (lane) return { queue: lane[1], lane: lane[2], tier: "" };
  return { queue: topic, lane: "normal", tier: "" };
}

// "0, 1, 2, 3, 7" -> "0–3, 7": runs of three or more as a range.
export function numbers(values) {
  const sorted = [...new Set(values)].sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    if (j - i >= 2) out.push(`${sorted[i]}–${sorted[j]}`);
    else for (let k = i; k <= j; k++) out.push(String(sorted[k]));
    i = j + 1;
  }
  return out.join(", ");
}

function sameSets(groups) {
  const sets = [...groups.values()].map((parts) => numbers(parts));
  return sets.every((s) => s === sets[0]);
}

// Lanes (or tiers) holding the same partitions say them once; else each names its own.
function told(groups, order) {
  if (!groups.size) return "";
  if (sameSets(groups)) return numbers([...groups.values()][0]);
  return order(groups).map(([name, parts]) => `${name} ${numbers(parts)}`).join(" · ");
}

const byLane = (groups) => [...groups.entries()].sort(([a], [b]) => LANES.indexOf(a) - LANES.indexOf(b));
const byName = (groups) => [...groups.entries()].sort(([a], [b]) => a.localeCompare(b, "en", { numeric: true }));

// [{queue, text}] sorted by queue, e.g. {queue: "email", text: "email: 0, 2, 4 · tiers: 0, 2, 4"}.
export function partitionSummary(assigned, index) {
  const queues = new Map(); // queue -> {lanes: Map(lane -> [p]), tiers: Map(tier -> [p])}
  for (const entry of assigned) {
    const cut = entry.lastIndexOf("/");
    const topic = entry.slice(0, cut);
    const partition = Number(entry.slice(cut + 1));
    if (cut < 0 || !Number.isInteger(partition)) continue;
    const where = index.get(topic) || guess(topic);
    if (!queues.has(where.queue)) queues.set(where.queue, { lanes: new Map(), tiers: new Map() });
    const mine = queues.get(where.queue);
    const [groups, name] = where.tier ? [mine.tiers, where.tier] : [mine.lanes, where.lane || "normal"];
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(partition);
  }
  return [...queues.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([queue, { lanes, tiers }]) => {
    const tierText = told(tiers, byName);
    const text = `${queue}: ${told(lanes, byLane) || "–"}${tierText ? ` · tiers: ${tierText}` : ""}`;
    return { queue, text };
  });
}
