// A vendor driver whose module fails as it is imported (tests of `mdev host --driver`).
export {};

throw new Error('this driver cannot load');
