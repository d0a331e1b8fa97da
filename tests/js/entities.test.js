// The official Durable Task JavaScript SDK's entities (client + worker) against the durable
// sidecar: class entities, signals and calls from orchestrations and the client, critical
// sections, failures rolled back, and queries.
//
// Run: npm ci --prefix tests/js && DURABLE_BIN=target/debug/durable node --test tests/js/

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const net = require("node:net");
const path = require("node:path");
const {
  TaskHubGrpcClient,
  TaskHubGrpcWorker,
  EntityInstanceId,
  TaskEntity,
  ProtoOrchestrationStatus: Status,
} = require("@microsoft/durabletask-js");

const quiet = { error() {}, warn() {}, info() {}, debug() {} };
const binary = process.env.DURABLE_BIN || path.join(__dirname, "..", "..", "target", "debug", "durable");

class Counter extends TaskEntity {
  add(amount) {
    this.state.count += amount;
    return this.state.count;
  }
  get() {
    return this.state.count;
  }
  initializeState() {
    return { count: 0 };
  }
}

class Account extends TaskEntity {
  deposit(amount) {
    this.state.balance += amount;
  }
  withdraw(amount) {
    if (amount > this.state.balance) {
      throw new Error(`insufficient funds: ${this.state.balance} < ${amount}`);
    }
    this.state.balance -= amount;
  }
  balance() {
    return this.state.balance;
  }
  initializeState() {
    return { balance: 0 };
  }
}

const callCounter = async function* callCounter(ctx, key) {
  const id = new EntityInstanceId("Counter", key);
  ctx.entities.signalEntity(id, "add", 5);
  yield ctx.entities.callEntity(id, "add", 2);
  return yield ctx.entities.callEntity(id, "get");
};

const transfer = async function* transfer(ctx, [from, to, amount]) {
  const a = new EntityInstanceId("Account", from);
  const b = new EntityInstanceId("Account", to);
  const lock = yield ctx.entities.lockEntities(a, b);
  try {
    const inSection = ctx.entities.isInCriticalSection().inSection;
    const balance = yield ctx.entities.callEntity(a, "balance");
    if (balance < amount) return { inSection, moved: false };
    yield ctx.entities.callEntity(a, "withdraw", amount);
    yield ctx.entities.callEntity(b, "deposit", amount);
    return { inSection, moved: true };
  } finally {
    lock.release();
  }
};

let sidecar;
let client;
let worker;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function eventually(probe, what) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  const port = await freePort();
  sidecar = spawn(binary, ["sidecar", "--port", String(port), "--in-memory"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise((resolve, reject) => {
    sidecar.stdout.once("data", (line) =>
      String(line).includes("listening on") ? resolve() : reject(new Error(String(line))),
    );
    sidecar.once("error", reject);
  });
  const hostAddress = `127.0.0.1:${port}`;
  client = new TaskHubGrpcClient({ hostAddress, logger: quiet });
  worker = new TaskHubGrpcWorker({ hostAddress, logger: quiet });
  worker.addNamedEntity("Counter", () => new Counter());
  worker.addNamedEntity("Account", () => new Account());
  worker.addOrchestrator(callCounter);
  worker.addOrchestrator(transfer);
  await worker.start();
});

after(async () => {
  await worker.stop();
  await client.stop();
  sidecar.kill("SIGTERM");
});

test("signals and calls from an orchestration and the client", async () => {
  const id = await client.scheduleNewOrchestration(callCounter, "js-1");
  const state = await client.waitForOrchestrationCompletion(id, undefined, 60);
  assert.equal(state.runtimeStatus, Status.ORCHESTRATION_STATUS_COMPLETED);
  assert.equal(JSON.parse(state.serializedOutput), 7);
  const counter = new EntityInstanceId("Counter", "js-1");
  await client.signalEntity(counter, "add", 3);
  await eventually(async () => (await client.getEntity(counter))?.state?.count === 10, "the signal");
  assert.equal(await client.getEntity(new EntityInstanceId("Counter", "nobody")), undefined);
});

test("critical sections move money without losing any, failures roll back", async () => {
  const alice = new EntityInstanceId("Account", "alice");
  const bob = new EntityInstanceId("Account", "bob");
  await client.signalEntity(alice, "deposit", 100);
  await client.signalEntity(bob, "deposit", 100);
  await client.signalEntity(alice, "withdraw", 1000); // fails: the balance stays
  const ids = [];
  for (let i = 0; i < 6; i++) {
    const args = i % 2 === 0 ? ["alice", "bob", 30] : ["bob", "alice", 10];
    ids.push(await client.scheduleNewOrchestration(transfer, args));
  }
  for (const id of ids) {
    const state = await client.waitForOrchestrationCompletion(id, undefined, 60);
    assert.equal(state.runtimeStatus, Status.ORCHESTRATION_STATUS_COMPLETED);
    assert.equal(JSON.parse(state.serializedOutput).inSection, true);
  }
  const a = (await client.getEntity(alice)).state.balance;
  const b = (await client.getEntity(bob)).state.balance;
  assert.equal(a + b, 200);
  assert.equal(a, 40);
});

test("queries by name prefix", async () => {
  for (const key of ["q1", "q2", "q3"]) {
    await client.signalEntity(new EntityInstanceId("Counter", key), "add", 1);
  }
  const found = await eventually(async () => {
    const items = [];
    for await (const entity of client.getEntities({ instanceIdStartsWith: "@Counter@q", includeState: true })) {
      items.push(entity);
    }
    return items.length === 3 ? items : undefined;
  }, "three counters");
  assert.deepEqual(found.map((e) => e.id.key).sort(), ["q1", "q2", "q3"]);
});
