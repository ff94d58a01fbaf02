// A C-STORE sender built on dcmjs-dimse (pure JavaScript), driven from the command line
// so that scukit can judge it through --scu-command:
//
//   node dcmjs_store.js [--calling-ae AE] [--called-ae AE] [--dimse-timeout S]
//                       [--acse-timeout S] [--max-pdu N] HOST PORT FILE...
//
// It is written as an integrator following dcmjs-dimse's README would: one Client, one
// CStoreRequest per file (in order), the codecs initialised so that a file can be
// transcoded, and Explicit VR Little Endian offered besides each file's own syntax.
// Timeouts are seconds (dcmjs-dimse takes milliseconds and checks them once a second).
// Exit status: 0 every file stored (success or warning), 1 some file failed or got no
// answer, 2 nothing could be sent (association rejected, connection failed).
'use strict';

const net = require('net');

// TCP_NODELAY on the socket dcmjs-dimse opens (Node leaves Nagle on by default).
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  this.setNoDelay(true);
  return connect.apply(this, args);
};

const dimse = require('dcmjs-dimse');

const { Client, Implementation, Transcoding } = dimse;
const { CStoreRequest } = dimse.requests;
const { TransferSyntax } = dimse.constants;

function parse(argv) {
  const opts = { callingAe: 'DCMJS', calledAe: 'ANY-SCP', files: [] };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--calling-ae') opts.callingAe = value();
    else if (arg === '--called-ae') opts.calledAe = value();
    else if (arg === '--dimse-timeout') opts.dimseTimeout = Number(value());
    else if (arg === '--acse-timeout') opts.acseTimeout = Number(value());
    else if (arg === '--max-pdu') opts.maxPdu = Number(value());
    else positional.push(arg);
  }
  if (positional.length < 3) throw new Error('usage: dcmjs_store.js [options] HOST PORT FILE...');
  [opts.host, opts.port] = [positional[0], Number(positional[1])];
  opts.files = positional.slice(2);
  return opts;
}

function category(status) {
  if (status === 0) return 'success';
  if (status === 0x0001 || status === 0x0107 || status === 0x0116) return 'warning';
  if ((status & 0xf000) === 0xb000) return 'warning';
  return 'failure';
}

async function main() {
  const opts = parse(process.argv.slice(2));
  await Transcoding.initializeAsync();
  if (opts.maxPdu) Implementation.setMaxPduLength(opts.maxPdu);
  const client = new Client();
  const results = new Map();
  for (const file of opts.files) {
    const request = new CStoreRequest(file);
    request.setAdditionalTransferSyntaxes([TransferSyntax.ExplicitVRLittleEndian]);
    request.on('response', (response) => {
      const status = response.getStatus();
      results.set(request, status);
      const hex = status.toString(16).padStart(4, '0');
      console.log(`${file}: status 0x${hex} (${category(status)})`);
    });
    client.addRequest(request);
  }
  let problem = null;
  client.on('associationRejected', (reject) => {
    problem = `association rejected: ${JSON.stringify(reject)}`;
  });
  client.on('networkError', (error) => {
    problem = problem || `network error: ${error.message}`;
  });
  client.on('closed', () => {
    const answered = results.size;
    const failed = [...results.values()].filter((s) => category(s) === 'failure').length;
    const unanswered = opts.files.length - answered;
    if (problem) console.log(problem);
    console.log(`${answered} answered, ${failed} failed, ${unanswered} unanswered`);
    if (answered === 0 && problem) process.exit(2);
    process.exit(failed || unanswered ? 1 : 0);
  });
  const sendOpts = {};
  if (opts.dimseTimeout) sendOpts.pduTimeout = Math.ceil(opts.dimseTimeout * 1000);
  if (opts.acseTimeout) sendOpts.associationTimeout = Math.ceil(opts.acseTimeout * 1000);
  client.send(opts.host, opts.port, opts.callingAe, opts.calledAe, sendOpts);
}

main().catch((error) => {
  console.error(`dcmjs_store: ${error.stack || error}`);
  process.exit(2);
});
