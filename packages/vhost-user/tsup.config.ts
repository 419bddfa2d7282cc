import { library } from '../../tsup.shared';

// The addon is not bundled: dist/ loads it from build/Release/ at run time (see src/native.ts).
export default library(['src/index.ts']);
