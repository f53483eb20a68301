// What the options page accepts as the Stoflow server and the Vinted sites.
import assert from "node:assert/strict";
import { test } from "node:test";

import { originOf } from "../src/settings.js";

test("a bare host is taken as https and reduced to its origin", () => {
  assert.equal(originOf(" www.vinted.fr/ "), "https://www.vinted.fr");
  assert.equal(originOf("https://www.vinted.de/catalog?x=1"), "https://www.vinted.de");
});

test("a local server keeps its scheme and port", () => {
  assert.equal(originOf("http://127.0.0.1:8900"), "http://127.0.0.1:8900");
});

test("anything that is not an http(s) address is refused", () => {
  for (const text of ["", "   ", "ftp://vinted.fr", "javascript:alert(1)", "http://"]) {
    assert.equal(originOf(text), null, text);
  }
});
