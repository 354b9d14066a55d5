/**
 * The I2C buses of the virtual Pico: one router that chip models register with, by (bus, 7-bit address), and two
 * ways a controller reaches them.
 *
 * 1. The I2C peripheral. rp2040js calls onStart/onConnect/onWriteByte/onReadByte/onStop for every transfer the
 *    hardware makes; the router finds the target by address and completes each step with its answer. This is every
 *    transfer with data: readfrom_mem, writeto_mem, readfrom, writeto.
 * 2. The pins. The rp2 port cannot make a zero-length write in hardware, so machine_i2c.c bit-bangs it on the same
 *    GPIOs (soft I2C): that is how `i2c.scan()` probes each address. PinBus watches SDA and SCL of a bus, decodes
 *    START, address, data bits and STOP, and holds SDA low to ACK or to send a 0 (open drain, the pull-ups are on
 *    the board).
 *
 * A target is { start?(read) -> ack, write(byte) -> ack, read() -> byte, stop?() }: start(read) when its address
 * is called (read: a read transfer; return false to NACK), write for each byte the controller sends (false: NACK),
 * read for each byte it asks for, stop at STOP. Over the peripheral a method may return a Promise (a target behind a
 * wire to another process): the transfer waits, as the controller waits on clock stretching. The pins need an
 * answer at once, so there only the address is matched (a registered address ACKs) and data bytes are synchronous.
 */
import { I2CMode } from 'rp2040js';

export class I2CRouter {
  /** pins: { 0: { sda, scl }, 1: { sda, scl } }, the GPIOs wired to each bus (boards.py PICO). */
  constructor(mcu, pins, log = () => {}) {
    this.mcu = mcu;
    this.pins = pins;
    this.log = log;
    this.targets = [new Map(), new Map()];
    this.pinBuses = [];
    mcu.i2c.forEach((peripheral, bus) => this.hookPeripheral(peripheral, bus));
    for (const [bus, p] of Object.entries(pins)) this.pinBuses.push(new PinBus(mcu, Number(bus), p, this));
  }

  register(bus, address, target) {
    if (this.targets[bus].has(address)) throw new Error(`I2C${bus} 0x${address.toString(16)}: already taken`);
    this.targets[bus].set(address, target);
    return () => this.targets[bus].delete(address);
  }

  target(bus, address) {
    return this.targets[bus].get(address);
  }

  hookPeripheral(i2c, bus) {
    let current = null;
    const then = (value, done) => {
      if (value && typeof value.then === 'function') value.then(done, () => done(undefined));
      else done(value);
    };
    i2c.onStart = () => i2c.completeStart();
    i2c.onConnect = (address, mode) => {
      current = this.target(bus, address) || null;
      if (!current) return i2c.completeConnect(false);
      then(current.start ? current.start(mode === I2CMode.Read) : true, (ack) => {
        if (ack === false) current = null;
        i2c.completeConnect(ack !== false);
      });
    };
    i2c.onWriteByte = (value) => {
      if (!current) return i2c.completeWrite(false);
      then(current.write(value), (ack) => i2c.completeWrite(ack !== false));
    };
    i2c.onReadByte = () => {
      if (!current) return i2c.completeRead(0xff);
      then(current.read(), (value) => i2c.completeRead((value ?? 0xff) & 0xff));
    };
    i2c.onStop = () => {
      const t = current;
      current = null;
      if (t && t.stop) then(t.stop(), () => i2c.completeStop());
      else i2c.completeStop();
    };
  }
}

/** One bus at the pin level: a decoder of the soft-I2C waveform, and the open-drain line it drives back. */
class PinBus {
  constructor(mcu, bus, { sda, scl }, router) {
    this.gpioSda = mcu.gpio[sda];
    this.gpioScl = mcu.gpio[scl];
    this.bus = bus;
    this.router = router;
    this.holdSda = false;          // the target pulls SDA low (ACK, or a 0 bit it sends)
    this.scl = true;
    this.sda = true;
    this.state = 'idle';           // idle | address | write | ack | send | host-ack
    this.bits = 0;
    this.count = 0;
    this.target = null;
    this.sendByte = 0;
    const update = () => this.update();
    this.gpioSda.addListener(update);
    this.gpioScl.addListener(update);
    this.drive();
  }

  /** A line is low when the Pico drives it low (output enabled, value 0) or, for SDA, when the target holds it. */
  driven(gpio) {
    return gpio.outputEnable && !gpio.outputValue;
  }

  drive() {
    this.gpioScl.setInputValue(this.scl);
    this.gpioSda.setInputValue(this.sda);
  }

  update() {
    const scl = !this.driven(this.gpioScl);
    let sda = !this.driven(this.gpioSda) && !this.holdSda;
    if (scl && this.scl && this.sda !== sda) {
      if (!sda) this.begin();                            // SDA falls while SCL is high: START
      else this.end();                                   // SDA rises while SCL is high: STOP
      sda = !this.driven(this.gpioSda) && !this.holdSda;
    } else if (scl && !this.scl) {
      this.rising(sda);                                  // the controller samples or we sample
    } else if (!scl && this.scl) {
      this.falling();                                    // the data line may change now
      sda = !this.driven(this.gpioSda) && !this.holdSda;
    }
    this.scl = scl;
    this.sda = sda;
    this.drive();
  }

  begin() {
    this.state = 'address';
    this.bits = 0;
    this.count = 0;
    this.holdSda = false;
  }

  end() {
    if (this.target && this.target.stop) this.target.stop();
    this.target = null;
    this.state = 'idle';
    this.holdSda = false;
  }

  rising(sda) {
    if (this.state === 'address' || this.state === 'write') {
      this.bits = (this.bits << 1) | (sda ? 1 : 0);
      this.count++;
    } else if (this.state === 'host-ack') {
      this.state = sda ? 'idle' : 'send-next';          // NACK from the controller ends a read
    }
  }

  falling() {
    if (this.state === 'ack') {
      this.holdSda = false;
      this.state = this.next;
      this.bits = 0;
      this.count = 0;
      if (this.state === 'send') this.loadByte();
    } else if (this.state === 'send-next') {
      this.state = 'send';
      this.loadByte();
    }
    if ((this.state === 'address' || this.state === 'write') && this.count === 8) {
      if (this.state === 'address') this.addressed(this.bits >> 1, this.bits & 1);
      else this.ack(this.target.write(this.bits) !== false, 'write');
    } else if (this.state === 'send') {
      if (this.count < 8) {
        this.holdSda = !((this.sendByte >> (7 - this.count)) & 1);
        this.count++;
      } else {
        this.holdSda = false;
        this.state = 'host-ack';
      }
    }
  }

  addressed(address, read) {
    const target = this.router.target(this.bus, address);
    let ack = !!target;
    if (target && target.start) {
      const answer = target.start(!!read);
      ack = answer === false ? false : true;              // a Promise counts as an ACK here: the pins cannot wait
    }
    this.target = ack ? target : null;
    if (!ack) {
      this.state = 'idle';
      return;
    }
    this.ack(true, read ? 'send' : 'write');
  }

  ack(ack, next) {
    if (!ack) {
      this.state = 'idle';
      return;
    }
    this.holdSda = true;
    this.state = 'ack';
    this.next = next;
  }

  loadByte() {
    this.sendByte = (this.target.read() ?? 0xff) & 0xff;
    this.count = 0;
  }
}
