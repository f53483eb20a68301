// The shared task-protocol cases against the extension's rules (the reference Python client runs the
// same file in tests/unit/test_plugin_protocol_cases.py).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  UnresolvedReference,
  backoffSeconds,
  flattenForm,
  interruptedResult,
  isSuccess,
  judge,
  penaltyOf,
  prepareRequest,
  retryAfterSeconds,
  secondsUntilRoom,
  sendWindowFrom,
} from "../src/protocol.js";

const cases = JSON.parse(readFileSync(new URL("./protocol-cases.json", import.meta.url), "utf-8"));

/** Play a task against Vinted's scripted answers as the extension's runner does. */
function run(testCase) {
  const answers = [...testCase.vinted];
  const responses = [];
  const sent = [];
  let localError = null;
  let pause = null;
  const streak = testCase.streak ?? 0;
  for (const request of testCase.requests) {
    let prepared;
    try {
      prepared = prepareRequest(request, responses);
    } catch (error) {
      if (!(error instanceof UnresolvedReference)) throw error;
      localError = { code: "unresolved_reference", message: error.message };
      break;
    }
    sent.push(prepared);
    const answer = answers.shift();
    const headers = answer.headers ?? {};
    responses.push({ http_status: answer.http_status, body: answer.body });
    const penalty = penaltyOf(answer.http_status, headers, answer.body);
    if (penalty !== null) {
      const retryAfter = Object.entries(headers).find(([name]) => name.toLowerCase() === "retry-after");
      pause = { penalty, seconds: backoffSeconds(penalty, streak, retryAfterSeconds(retryAfter?.[1])) };
    }
    if (!isSuccess(answer.http_status)) break;
  }
  assert.deepEqual(answers, [], "every scripted Vinted answer is used");
  return { sent, result: judge(responses, testCase.requests.length, localError), pause };
}

function assertSameResult(got, expected) {
  assert.equal(got.status, expected.status);
  assert.deepEqual(got.responses, expected.responses);
  if (expected.error) {
    const picked = Object.fromEntries(Object.keys(expected.error).map((key) => [key, got.error[key]]));
    assert.deepEqual(picked, expected.error);
  } else {
    assert.equal(got.error, undefined);
  }
}

for (const testCase of cases.tasks) {
  test(`task: ${testCase.name}`, () => {
    const { sent, result, pause } = run(testCase);
    assert.deepEqual(sent, testCase.sent);
    assertSameResult(result, testCase.result);
    assert.deepEqual(pause, testCase.pause);
  });
}

for (const testCase of cases.forms) {
  test(`form: ${testCase.name}`, () => {
    assert.deepEqual(flattenForm(testCase.body), testCase.fields);
  });
}

for (const testCase of cases.interrupted) {
  test(`interrupted: ${testCase.name}`, () => {
    assertSameResult(interruptedResult(testCase.responses, testCase.request_count), testCase.result);
  });
}

for (const testCase of cases.windows) {
  test(`window: ${testCase.name}`, () => {
    const window = { limit: testCase.limit, seconds: testCase.seconds };
    assert.equal(secondsUntilRoom(window, testCase.sends, testCase.now, testCase.needed), testCase.wait);
  });
}

for (const testCase of cases.window_answers) {
  test(`window answer: ${testCase.name}`, () => {
    assert.deepEqual(sendWindowFrom(testCase.body), testCase.window);
  });
}
