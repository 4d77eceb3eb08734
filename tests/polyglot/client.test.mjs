// A Node.js client (@grpc/grpc-js + @grpc/proto-loader) driving a real workerstate daemon.
// Run by tests/test_polyglot.py with WORKERSTATE_ADDRESS and PROTO_INCLUDES set.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import test from "node:test";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const address = process.env.WORKERSTATE_ADDRESS;
const includes = process.env.PROTO_INCLUDES.split(path.delimiter);
const taskId = `node-${process.pid}`;

const definition = protoLoader.loadSync("workerstate/v1/workerstate.proto", {
  includeDirs: includes,
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
});
const { WorkerService } = grpc.loadPackageDefinition(definition).workerstate.v1;
const client = new WorkerService(address, grpc.credentials.createInsecure());

// google.rpc.Status and its details, read from the same files any language would use.
const rpc = new protobuf.Root();
rpc.resolvePath = (_, target) =>
  includes.map((dir) => path.join(dir, target)).find(existsSync) ?? target;
rpc.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"]);
const Status = rpc.lookupType("google.rpc.Status");
const ErrorInfo = rpc.lookupType("google.rpc.ErrorInfo");

const call = (method, request) =>
  new Promise((resolve, reject) =>
    client[method](request, (error, response) => (error ? reject(error) : resolve(response))),
  );

function errorInfo(error) {
  const [raw] = error.metadata.get("grpc-status-details-bin");
  const status = Status.decode(raw);
  const detail = status.details.find((d) => d.type_url.endsWith("google.rpc.ErrorInfo"));
  return ErrorInfo.decode(detail.value);
}

test("create and move a worker through the states", async () => {
  const created = await call("CreateWorker", {
    task_id: taskId, branch: `feat/${taskId}`, worktree: "/tmp/node", request_id: `${taskId}-1`,
  });
  assert.equal(created.worker.state, "WORKER_STATE_ASSIGNED");
  let revision = created.revision;
  for (const [from, to] of [["ASSIGNED", "WORKING"], ["WORKING", "IN_REVIEW"],
                            ["IN_REVIEW", "APPROVED"]]) {
    const moved = await call("Transition", {
      task_id: taskId, from_state: `WORKER_STATE_${from}`, to_state: `WORKER_STATE_${to}`,
    });
    assert.equal(moved.worker.state, `WORKER_STATE_${to}`);
    assert.ok(moved.revision > revision);
    revision = moved.revision;
  }
  const got = await call("GetWorker", { task_id: taskId });
  assert.equal(got.worker.revision, revision);
});

test("STALE_STATE carries ErrorInfo in grpc-status-details-bin", async () => {
  await assert.rejects(
    call("Transition", {
      task_id: taskId, from_state: "WORKER_STATE_WORKING", to_state: "WORKER_STATE_IN_REVIEW",
    }),
    (error) => {
      assert.equal(error.code, grpc.status.ABORTED);
      const info = errorInfo(error);
      assert.equal(info.reason, "STALE_STATE");
      assert.equal(info.domain, "workerstate.v1");
      assert.equal(info.metadata.actual_state, "APPROVED");
      assert.equal(info.metadata.expected_state, "WORKING");
      return true;
    },
  );
});

test("WatchState with send_initial_state: snapshot, synced, then live", async () => {
  const stream = client.WatchState({ send_initial_state: true, task_ids: [taskId] });
  const messages = [];
  const done = new Promise((resolve, reject) => {
    stream.on("data", (message) => {
      messages.push(message);
      if (message.synced) {
        call("Transition", {
          task_id: taskId, from_state: "WORKER_STATE_APPROVED",
          to_state: "WORKER_STATE_COMPLETED", reason: "merged",
        }).catch(reject);
      }
      if (message.events.some((e) => e.type === "EVENT_TYPE_STATE_CHANGED")) resolve();
    });
    stream.on("error", (error) => {
      if (error.code !== grpc.status.CANCELLED) reject(error);
    });
  });
  await done;
  stream.cancel();
  const [snapshot, synced, live] = messages;
  assert.deepEqual(snapshot.events.map((e) => e.type), ["EVENT_TYPE_SNAPSHOT"]);
  assert.equal(snapshot.events[0].worker.state, "WORKER_STATE_APPROVED");
  assert.equal(synced.synced.revision, snapshot.events[0].revision);
  const [event] = live.events;
  assert.equal(event.revision, synced.synced.revision + 1);
  assert.equal(event.from_state, "WORKER_STATE_APPROVED");
  assert.equal(event.worker.state, "WORKER_STATE_COMPLETED");
  assert.equal(event.reason, "merged");
});
