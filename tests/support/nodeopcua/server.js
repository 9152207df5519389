// An independent OPC UA peer (node-opcua) for symtwin's integration tests and the OPC UA benchmark.
//
// Usage: node server.js '<json options>'
//   port                      TCP port (required)
//   pkiDir                    folder for the server's own PKI (certificates are created there)
//   maxMonitoredItemsPerCall  operation limit advertised and enforced (0 = none)
//   maxNodesPerRead           idem
//   maxNodesPerWrite          idem
//   bulk                      number of extra Double nodes "ns=1;s=Bulk.<i>" (benchmark)
//   bulkPeriodMs              how often every bulk node gets a new value with a fresh source timestamp
//   tickPeriodMs              how often the "ns=1;s=Counter" Double node increments (0 = never)
//
// Writable test nodes (ns=1): s=Double (Double), s=Float (Float), s=Int16 (Int16), s=Boolean (Boolean).
// Prints "READY <port>" on stdout once listening; stops cleanly on SIGTERM/SIGINT.
"use strict";

const path = require("path");
const { OPCUAServer } = require("node-opcua-server");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { DataType, Variant } = require("node-opcua-variant");
const { StatusCodes } = require("node-opcua-status-code");

async function main() {
    const opts = JSON.parse(process.argv[2] || "{}");
    const port = opts.port;
    const pkiDir = opts.pkiDir || path.join(__dirname, ".pki");
    const limits = {};
    if (opts.maxMonitoredItemsPerCall) limits.maxMonitoredItemsPerCall = opts.maxMonitoredItemsPerCall;
    if (opts.maxNodesPerRead) limits.maxNodesPerRead = opts.maxNodesPerRead;
    if (opts.maxNodesPerWrite) limits.maxNodesPerWrite = opts.maxNodesPerWrite;

    const serverCertificateManager = new OPCUACertificateManager({
        rootFolder: pkiDir,
        automaticallyAcceptUnknownCertificate: true,
    });
    const server = new OPCUAServer({
        port,
        resourcePath: "/UA/symtwin",
        serverCertificateManager,
        serverCapabilities: { operationLimits: limits, maxSessions: 20 },
        maxConnectionsPerEndpoint: 20,
    });
    await server.initialize();

    const addressSpace = server.engine.addressSpace;
    const ns = addressSpace.getOwnNamespace();
    const folder = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Symtwin" });
    const access = "CurrentRead | CurrentWrite";
    const typed = [
        ["Double", DataType.Double, 1.5],
        ["Float", DataType.Float, 2.5],
        ["Int16", DataType.Int16, 3],
        ["Boolean", DataType.Boolean, false],
    ];
    for (const [name, dataType, value] of typed) {
        ns.addVariable({
            componentOf: folder,
            browseName: name,
            nodeId: `s=${name}`,
            dataType: DataType[dataType],
            accessLevel: access,
            userAccessLevel: access,
            minimumSamplingInterval: 50,
            value: new Variant({ dataType, value }),
        });
    }
    const counter = ns.addVariable({
        componentOf: folder,
        browseName: "Counter",
        nodeId: "s=Counter",
        dataType: "Double",
        minimumSamplingInterval: 50,
        value: new Variant({ dataType: DataType.Double, value: 0 }),
    });
    const bulk = [];
    for (let i = 0; i < (opts.bulk || 0); i++) {
        bulk.push(
            ns.addVariable({
                componentOf: folder,
                browseName: `Bulk.${i}`,
                nodeId: `s=Bulk.${i}`,
                dataType: "Double",
                minimumSamplingInterval: 0, // exception-based: no polling of 10,000 nodes
                value: new Variant({ dataType: DataType.Double, value: 0 }),
            })
        );
    }

    const timers = [];
    if (opts.tickPeriodMs) {
        let n = 0;
        timers.push(
            setInterval(() => {
                n += 1;
                counter.setValueFromSource(new Variant({ dataType: DataType.Double, value: n }), StatusCodes.Good, new Date());
            }, opts.tickPeriodMs)
        );
    }
    if (bulk.length) {
        let k = 0;
        timers.push(
            setInterval(() => {
                k += 1;
                const now = new Date();
                for (let i = 0; i < bulk.length; i++) {
                    bulk[i].setValueFromSource(new Variant({ dataType: DataType.Double, value: k + i * 1e-3 }), StatusCodes.Good, now);
                }
            }, opts.bulkPeriodMs || 1000)
        );
    }

    await server.start();
    process.stdout.write(`READY ${port}\n`);

    let stopping = false;
    const stop = async () => {
        if (stopping) return;
        stopping = true;
        for (const t of timers) clearInterval(t);
        // Tests restart the server often; do not wait for node-opcua's slow orderly shutdown.
        setTimeout(() => process.exit(0), 500).unref();
        await server.shutdown(0);
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((err) => {
    process.stderr.write(`node-opcua test server failed: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
});
