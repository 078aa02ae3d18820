// index.js -- the plcache package: what a Node app server uses of plcache.
//   attach(pl, opts)                 PromptLayer's SDK answered from plcache's Redis (sdk.js)
//   logRequestFromOpenAI, ..., push  log jobs PromptLayer accepts (logjob.js)
"use strict";

module.exports = { ...require("./logjob"), attach: require("./sdk").attach };
