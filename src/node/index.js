// index.js -- the plcache package: what a Node app server uses of plcache.
"use strict";

module.exports = { ...require("./logjob") };
