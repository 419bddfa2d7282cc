import { library } from '../../tsup.shared';

export default library(['src/index.ts']);
